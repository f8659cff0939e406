package e2e

// Browser tests: headless Chromium (Debian's chromium package, driven by
// chromedp) runs the web client served at /app/ by the real chatd binary.
// Two users, each in a browser context of their own (separate storage,
// cookies and connections, like two people's browsers), chat through the
// UI only.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// browserWait bounds one UI condition: only reached when something is
// wrong, generous for a loaded CI machine running a browser.
const browserWait = 30 * time.Second

// chromiumPath finds the browser. Without one the browser tests skip,
// except under CI=true, where .ci/run installs it and its absence is a
// failure.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not found: the browser tests need it (apt-get install chromium; .ci/run installs it)")
	}
	t.Skip("chromium not found: install Debian's chromium package to run the browser tests (they fail without it when CI=true)")
	return ""
}

// browser is one Chromium process; its pages are in separate browser
// contexts.
type browser struct {
	t     *testing.T
	ctx   context.Context
	shots string // where screenshots of a failed test go
	mu    sync.Mutex
	pages []*page
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	exe := chromiumPath(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // tests run as root in CI containers, where the sandbox cannot start
		chromedp.Flag("disable-gpu", true),
		chromedp.WindowSize(1100, 800),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	// The first action starts the browser (pages need it running to make
	// their browser contexts), on ctx itself: the browser lives as long as
	// the context of that first action.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}
	b := &browser{t: t, ctx: ctx}
	// One cleanup, registered before the pages exist, so that it runs after
	// everything the test registers later and while the pages still live.
	t.Cleanup(func() {
		b.screenshotsOnFailure()
		b.mu.Lock()
		for _, p := range b.pages {
			p.cancel()
		}
		b.mu.Unlock()
		cancel()
		cancelAlloc()
	})
	return b
}

// page is one user's tab.
type page struct {
	t      *testing.T
	name   string
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	logs   []string // the page's console and uncaught exceptions
}

func (b *browser) page(name string) *page {
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	p := &page{t: b.t, name: name, ctx: ctx, cancel: cancel}
	b.mu.Lock()
	b.pages = append(b.pages, p)
	b.mu.Unlock()
	if err := chromedp.Do(ctx); err != nil { // creates the context and its tab
		b.t.Fatalf("%s: new browser context: %v", name, err)
	}
	err := chromedp.Listen(ctx, func(ev any) {
		var line string
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			line = fmt.Sprintf("console.%s %s", ev.Type, strings.Join(args, " "))
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			line = fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber+1, d.Text)
			if d.Exception != nil {
				line += " " + d.Exception.Description
			}
		default:
			return
		}
		p.mu.Lock()
		p.logs = append(p.logs, line)
		p.mu.Unlock()
	})
	if err != nil {
		b.t.Fatalf("%s: listen to the page: %v", name, err)
	}
	return p
}

// screenshotsOnFailure saves every page as it looked when the test failed,
// with its console. Not in t.TempDir(): that is removed when the test
// ends, which is exactly when the pictures are wanted.
func (b *browser) screenshotsOnFailure() {
	if !b.t.Failed() {
		return
	}
	dir, err := os.MkdirTemp("", "mqchat-browser-"+b.t.Name()+"-")
	if err != nil {
		b.t.Logf("screenshots: %v", err)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.pages {
		ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		cancel()
		if err != nil {
			b.t.Logf("%s: screenshot: %v", p.name, err)
		} else if err := os.WriteFile(filepath.Join(dir, p.name+".png"), png, 0o644); err != nil {
			b.t.Logf("%s: screenshot: %v", p.name, err)
		}
		p.mu.Lock()
		b.t.Logf("%s console:\n%s", p.name, strings.Join(p.logs, "\n"))
		p.mu.Unlock()
	}
	b.t.Logf("screenshots of the failed test in %s", dir)
}

// do runs UI steps, failing the test with what was being done.
func (p *page) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserWait)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.t.Fatalf("%s: %s: %v", p.name, what, err)
	}
}

// waitFor waits until the JavaScript expression is truthy in the page.
func (p *page) waitFor(what, expr string) {
	p.t.Helper()
	if err := p.poll(expr, browserWait); err != nil {
		p.t.Fatalf("%s: waiting until %s (%s): %v", p.name, what, expr, err)
	}
}

func (p *page) poll(expr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(p.ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	return err
}

// eval returns the value of a JavaScript expression.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.t.Fatalf("%s: evaluate %s: %v", p.name, expr, err)
	}
	return v
}

// js quotes s as a JavaScript string literal.
func js(s string) string { return strconv.Quote(s) }

// msgWith is an expression for the message item of the open chat whose
// body is text (null when there is none).
func msgWith(text string) string {
	return `[...document.querySelectorAll("#messages li.msg")].find(li => li.querySelector(".body")?.textContent === ` + js(text) + `)`
}

// chatItem is an expression for the chat list entry titled title.
func chatItem(title string) string {
	return `[...document.querySelectorAll("#chat-list li")].find(li => li.querySelector(".title").textContent === ` + js(title) + `)`
}

func (p *page) signUp(base, user, password string) {
	p.t.Helper()
	p.do("open the client", chromedp.Navigate(base+"/app/?page=5"), chromedp.WaitVisible(chromedp.ID("auth-form")))
	p.do("register",
		chromedp.SendKeys(chromedp.ID("auth-username"), user),
		chromedp.SendKeys(chromedp.ID("auth-password"), password),
		chromedp.Click(chromedp.ID("register-btn")),
	)
	p.waitFor("signed in and connected", `document.querySelector("#conn-state").dataset.state === "online" && document.querySelector("#me").textContent === `+js(user))
}

// send types text into the open chat and waits until the server stored it
// (the message has a seq: the client's own copy came back).
func (p *page) send(text string) {
	p.t.Helper()
	p.do("send "+text, chromedp.SendKeys(chromedp.ID("composer-input"), text), chromedp.Click(chromedp.ID("send-btn")))
	p.waitFor("stored: "+text, msgWith(text)+`?.dataset.seq > 0`)
}

func TestBrowserChat(t *testing.T) {
	b := newBrowser(t)
	httpAddr, wsAddr := freePort(t), freePort(t)
	// No allowed origins configured: a page chatd serves itself may open
	// its WebSocket listener, another port of the same host.
	opts := procOpts{httpAddr: httpAddr, lifetime: 5 * time.Minute, args: []string{"--mqtt.ws_addr", wsAddr}}
	srv := startChatdWith(t, "chatd", t.TempDir(), opts)
	base := srv.base

	alice, bob := b.page("alice"), b.page("bob")
	alice.signUp(base, "alice", "alice password")
	bob.signUp(base, "bob", "bob password")

	// Alice starts a chat with Bob by his username and writes more than
	// a page of history (pages are 5 here).
	alice.do("start a chat with bob",
		chromedp.SendKeys(chromedp.ID("new-chat-username"), "bob"),
		chromedp.Click(chromedp.ID("new-chat-btn")),
	)
	alice.waitFor("the chat with bob is open", `document.querySelector("#chat-title").textContent === "bob"`)
	for i := 1; i <= 12; i++ {
		alice.send(fmt.Sprintf("hello %d", i))
	}

	// Bob, chat not open: the chat shows up with 12 unread, and his device's
	// acknowledgements give Alice delivered ticks.
	bob.waitFor("alice's chat with 12 unread", chatItem("alice")+`?.querySelector(".unread").textContent === "12"`)
	alice.waitFor("delivered ticks", msgWith("hello 12")+`.querySelector(".ticks").dataset.state === "delivered"`)

	// Opening it reads it: Alice's ticks turn to read, the unread count goes.
	bob.do("open alice's chat", chromedp.Evaluate[chromedp.Void](chatItem("alice")+`.click()`))
	bob.waitFor("all 12 messages", `document.querySelectorAll("#messages li.msg").length === 12`)
	alice.waitFor("read ticks", msgWith("hello 12")+`.querySelector(".ticks").dataset.state === "read"`)
	bob.waitFor("no unread", chatItem("alice")+`.querySelector(".unread").textContent === ""`)

	// Alice reloads: the client comes back to the chat (it is in the
	// address) holding nothing, shows the newest page and loads older ones
	// on demand.
	alice.do("reload", chromedp.Reload())
	alice.waitFor("reconnected", `document.querySelector("#conn-state").dataset.state === "online"`)
	alice.waitFor("the newest page", `document.querySelectorAll("#messages li.msg").length === 5 && `+msgWith("hello 8")+` && !document.querySelector("#older-btn").hidden`)
	alice.do("load older", chromedp.Click(chromedp.ID("older-btn")))
	alice.waitFor("the second page", `document.querySelectorAll("#messages li.msg").length === 10 && `+msgWith("hello 3"))
	alice.do("load older", chromedp.Click(chromedp.ID("older-btn")))
	alice.waitFor("all history", `document.querySelectorAll("#messages li.msg").length === 12 && `+msgWith("hello 1")+` && document.querySelector("#older-btn").hidden`)
	order := eval[[]string](alice, `[...document.querySelectorAll("#messages li.msg .body")].map(b => b.textContent)`)
	for i, body := range order {
		if want := fmt.Sprintf("hello %d", i+1); body != want {
			t.Fatalf("alice's history in order: item %d is %q, want %q (all: %q)", i, body, want, order)
		}
	}
	alice.waitFor("ticks remembered across the reload", msgWith("hello 12")+`.querySelector(".ticks").dataset.state === "read"`)

	// Bob replies (which accepts the request): live at Alice's, read at
	// once since her chat is open.
	bob.send("hi alice")
	alice.waitFor("bob's reply", msgWith("hi alice"))
	bob.waitFor("bob's reply read", msgWith("hi alice")+`.querySelector(".ticks").dataset.state === "read"`)

	// Now they are contacts: presence and typing flow both ways.
	alice.waitFor("bob online", `document.querySelector("#chat-presence").dataset.status === "online"`)
	bob.waitFor("alice online", `document.querySelector("#chat-presence").dataset.status === "online"`)
	typing := func(who, watcher *page, name string) {
		t.Helper()
		// Notices are rate-limited (one per 2 s, by the client and the
		// server), so a keystroke may be dropped: type again until seen.
		for attempt := 0; ; attempt++ {
			who.do("type", chromedp.SendKeys(chromedp.ID("composer-input"), "x"))
			err := watcher.poll(`document.querySelector("#chat-typing").textContent === `+js(name+" is typing…"), 3*time.Second)
			if err == nil {
				break
			}
			if attempt == 10 {
				t.Fatalf("%s: no typing indicator for %s: %v", watcher.name, name, err)
			}
		}
		who.do("clear the composer", chromedp.Evaluate[chromedp.Void](`document.querySelector("#composer-input").value = ""`))
	}
	typing(bob, alice, "bob")
	typing(alice, bob, "alice")

	// Bob goes away; Alice writes; Bob comes back (a reload of the same
	// tab: same device, same chat from the address) and has it.
	here := eval[string](bob, `location.href`)
	bob.do("leave", chromedp.Navigate("about:blank"))
	alice.send("while you were away")
	bob.do("come back", chromedp.Navigate(here))
	bob.waitFor("reconnected", `document.querySelector("#conn-state").dataset.state === "online"`)
	bob.waitFor("the message sent while away", msgWith("while you were away"))
	bob.waitFor("history before it kept", msgWith("hi alice"))
	alice.waitFor("read after the return", msgWith("while you were away")+`.querySelector(".ticks").dataset.state === "read"`)

	// The server restarts. A message written while it is down waits in
	// Alice's outbox, goes out once her client has reconnected on its own,
	// and reaches Bob, whose client reconnected too.
	srv.stop(t)
	for _, p := range []*page{alice, bob} {
		p.waitFor("the connection lost", `document.querySelector("#conn-state").dataset.state !== "online"`)
	}
	alice.do("write while the server is down",
		chromedp.SendKeys(chromedp.ID("composer-input"), "sent during the restart"),
		chromedp.Click(chromedp.ID("send-btn")),
	)
	alice.waitFor("the message pending", msgWith("sent during the restart")+`?.querySelector('.ticks[data-state="pending"]')`)
	srv = startChatdWith(t, "chatd (restarted)", srv.dataDir, procOpts{
		mqttAddr: srv.mqttAddr, httpAddr: srv.httpAddr, lifetime: opts.lifetime, args: opts.args,
	})
	alice.waitFor("stored after the restart", msgWith("sent during the restart")+`?.dataset.seq > 0`)
	bob.waitFor("received after the restart", msgWith("sent during the restart"))
	bob.waitFor("bob reconnected", `document.querySelector("#conn-state").dataset.state === "online"`)

	testBrowserLifecycle(t, alice, bob)

	// A group: Alice makes one with Bob; both talk in it.
	alice.do("create a group",
		chromedp.SendKeys(chromedp.ID("new-group-name"), "trip"),
		chromedp.SendKeys(chromedp.ID("new-group-members"), "bob"),
		chromedp.Click(chromedp.ID("new-group-btn")),
	)
	alice.waitFor("the group is open", `document.querySelector("#chat-title").textContent === "trip" && `+msgWith("alice created the group trip"))
	alice.send("hi group")
	bob.waitFor("the group in bob's list", chatItem("trip")+`?.querySelector(".unread").textContent !== ""`)
	bob.do("open the group", chromedp.Evaluate[chromedp.Void](chatItem("trip")+`.click()`))
	bob.waitFor("the group's messages", msgWith("hi group")+` && `+msgWith("alice created the group trip"))
	bob.send("hi all")
	alice.waitFor("bob's group message", msgWith("hi all"))
	bob.waitFor("read by every other member", msgWith("hi all")+`.querySelector(".ticks").dataset.state === "read"`)
}

// testBrowserLifecycle: in the open 1:1 chat, Alice edits and deletes her
// messages and both react; each change shows on the other side live.
func testBrowserLifecycle(t *testing.T, alice, bob *page) {
	t.Helper()
	alice.do("edit", chromedp.Evaluate[chromedp.Void](msgWith("while you were away")+`.querySelector(".act-edit").click()`))
	alice.waitFor("the composer holds the text", `!document.querySelector("#editing-banner").hidden && document.querySelector("#composer-input").value === "while you were away"`)
	alice.do("write the new text",
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#composer-input").value = ""`),
		chromedp.SendKeys(chromedp.ID("composer-input"), "while you were out"),
		chromedp.Click(chromedp.ID("send-btn")),
	)
	for _, p := range []*page{alice, bob} {
		p.waitFor("the edit", msgWith("while you were out")+`?.querySelector(".edited") && !`+msgWith("while you were away"))
	}

	bob.do("react", chromedp.Evaluate[chromedp.Void](msgWith("while you were out")+`.querySelector(".act-react").click()`))
	bob.do("pick 👍", chromedp.Evaluate[chromedp.Void](`document.querySelector('#picker button[data-emoji="👍"]').click()`))
	for _, p := range []*page{alice, bob} {
		p.waitFor("the reaction", msgWith("while you were out")+`?.querySelector('.reaction[data-emoji="👍"]')?.textContent === "👍 1"`)
	}
	mine := `.querySelector('.reaction[data-emoji="👍"]').classList.contains("mine")`
	if !eval[bool](bob, msgWith("while you were out")+mine) || eval[bool](alice, msgWith("while you were out")+mine) {
		t.Fatal("the 👍 should be marked as bob's own on bob's side only")
	}
	alice.do("react too", chromedp.Evaluate[chromedp.Void](msgWith("while you were out")+`.querySelector('.reaction[data-emoji="👍"]').click()`))
	for _, p := range []*page{alice, bob} {
		p.waitFor("two reactions", msgWith("while you were out")+`?.querySelector('.reaction[data-emoji="👍"]')?.textContent === "👍 2"`)
	}

	seq := eval[string](alice, msgWith("hello 11")+`.dataset.seq`)
	alice.do("delete", chromedp.Evaluate[chromedp.Void](msgWith("hello 11")+`.querySelector(".act-delete").click()`))
	for _, p := range []*page{alice, bob} {
		p.waitFor("the tombstone", `document.querySelector('#messages li.msg[data-seq="`+seq+`"]')?.classList.contains("deleted") && !`+msgWith("hello 11"))
	}
}
