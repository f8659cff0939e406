package auth_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/services/auth"
	"github.com/mqchat/mqchat/store"
	"github.com/mqchat/mqchat/store/pebble"
)

const (
	testCost     = 4 // hashing speed is not under test
	goodPassword = "correct horse battery"
	accessTTL    = 15 * time.Minute
	refreshTTL   = 30 * 24 * time.Hour
)

var testSecret = []byte("0123456789abcdef0123456789abcdef-test")

// clock is a settable time source for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	svc   *auth.Service
	store *pebble.Store
	dir   string
	clock *clock
}

// newFixture opens a real pebble store in a temp dir and builds the service
// on a controllable clock.
func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := pebble.Open(dir, pebble.Options{})
	if err != nil {
		t.Fatalf("pebble.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	clk := newClock()
	svc, err := auth.New(st, auth.Options{
		Secret: testSecret, AccessTTL: accessTTL, RefreshTTL: refreshTTL, BcryptCost: testCost, Now: clk.Now,
	})
	if err != nil {
		t.Fatalf("auth.New: %v", err)
	}
	return &fixture{svc: svc, store: st, dir: dir, clock: clk}
}

func (f *fixture) register(t *testing.T, name string) auth.Tokens {
	t.Helper()
	tok, err := f.svc.Register(context.Background(), name, goodPassword)
	if err != nil {
		t.Fatalf("Register(%q): %v", name, err)
	}
	return tok
}

// checkTokens asserts a freshly issued pair is usable and belongs to uid.
func (f *fixture) checkTokens(t *testing.T, tok auth.Tokens, uid string, ttl time.Duration) {
	t.Helper()
	if !ids.ValidUserID(tok.UserID) {
		t.Fatalf("UserID %q is not a valid user id", tok.UserID)
	}
	if uid != "" && tok.UserID != uid {
		t.Fatalf("UserID = %q, want %q", tok.UserID, uid)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" || tok.AccessToken == tok.RefreshToken {
		t.Fatalf("tokens: access %q, refresh %q", tok.AccessToken, tok.RefreshToken)
	}
	if want := int64(ttl / time.Second); tok.ExpiresIn != want {
		t.Fatalf("ExpiresIn = %d, want %d", tok.ExpiresIn, want)
	}
	got, err := f.svc.Authenticate(context.Background(), tok.AccessToken)
	if err != nil {
		t.Fatalf("Authenticate(access token): %v", err)
	}
	if got != tok.UserID {
		t.Fatalf("Authenticate = %q, want %q", got, tok.UserID)
	}
}

func wantInputError(t *testing.T, err error, field string) {
	t.Helper()
	var in *auth.InputError
	if !errors.As(err, &in) {
		t.Fatalf("err = %v (%T), want *auth.InputError for %s", err, err, field)
	}
	if in.Field != field {
		t.Fatalf("InputError.Field = %q (%v), want %q", in.Field, in, field)
	}
	if in.Reason == "" || !strings.HasPrefix(in.Error(), field+": ") {
		t.Fatalf("InputError message %q does not name the field %q with a reason", in.Error(), field)
	}
}

func TestNewRejectsShortSecret(t *testing.T) {
	st, err := pebble.Open(t.TempDir(), pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := auth.New(st, auth.Options{Secret: make([]byte, 31), BcryptCost: testCost}); err == nil {
		t.Fatal("New accepted a 31-byte secret")
	}
	if _, err := auth.New(st, auth.Options{Secret: make([]byte, 32), BcryptCost: testCost}); err != nil {
		t.Fatalf("New refused a 32-byte secret: %v", err)
	}
}

func TestRegister(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name      string
		username  string
		password  string
		wantName  string // stored username when accepted
		wantField string // InputError field when refused
	}{
		{name: "trimmed and lower-cased", username: " Alice ", password: goodPassword, wantName: "alice"},
		{name: "all allowed characters", username: "Bob.Smith_1-x", password: goodPassword, wantName: "bob.smith_1-x"},
		{name: "shortest username", username: "abc", password: goodPassword, wantName: "abc"},
		{name: "longest username", username: strings.Repeat("z", 32), password: goodPassword, wantName: strings.Repeat("z", 32)},
		{name: "shortest password", username: "pw8", password: "12345678", wantName: "pw8"},
		{name: "longest password", username: "pw72", password: strings.Repeat("p", 72), wantName: "pw72"},

		{name: "empty username", username: "", password: goodPassword, wantField: "username"},
		{name: "blank username", username: "   ", password: goodPassword, wantField: "username"},
		{name: "username too short", username: "ab", password: goodPassword, wantField: "username"},
		{name: "username too short after trim", username: " ab ", password: goodPassword, wantField: "username"},
		{name: "username too long", username: strings.Repeat("a", 33), password: goodPassword, wantField: "username"},
		{name: "username with space", username: "al ice", password: goodPassword, wantField: "username"},
		{name: "username with bang", username: "alice!", password: goodPassword, wantField: "username"},
		{name: "username with slash", username: "al/ice", password: goodPassword, wantField: "username"},
		{name: "username with wildcard", username: "al+ice", password: goodPassword, wantField: "username"},
		{name: "username with colon", username: "al:ice", password: goodPassword, wantField: "username"},
		{name: "non-ascii username", username: "élodie", password: goodPassword, wantField: "username"},
		{name: "empty password", username: "nopw", password: "", wantField: "password"},
		{name: "password too short", username: "shortpw", password: "1234567", wantField: "password"},
		{name: "password 7 runes in 14 bytes", username: "runepw", password: "ééééééé", wantField: "password"},
		{name: "password too long", username: "longpw", password: strings.Repeat("p", 73), wantField: "password"},
		{name: "bad username and password: username first", username: "x", password: "x", wantField: "username"},
	}
	ctx := context.Background()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := f.svc.Register(ctx, tc.username, tc.password)
			if tc.wantField != "" {
				wantInputError(t, err, tc.wantField)
				if tok != (auth.Tokens{}) {
					t.Fatalf("refused registration returned tokens %+v", tok)
				}
				if name, nerr := auth.NormalizeUsername(tc.username); nerr == nil {
					if _, err := f.store.UserByUsername(ctx, name); !errors.Is(err, store.ErrNotFound) {
						t.Fatalf("refused registration left a user %q behind: %v", name, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Register(%q): %v", tc.username, err)
			}
			f.checkTokens(t, tok, "", accessTTL)
			u, err := f.store.UserByUsername(ctx, tc.wantName)
			if err != nil {
				t.Fatalf("stored user %q: %v", tc.wantName, err)
			}
			if u.ID != tok.UserID || u.Username != tc.wantName {
				t.Fatalf("stored user %+v, want id %s username %q", u, tok.UserID, tc.wantName)
			}
			if !u.CreatedAt.Equal(f.clock.Now().Truncate(time.Millisecond)) {
				t.Fatalf("CreatedAt = %v, want the service clock %v", u.CreatedAt, f.clock.Now())
			}
			// The same password logs in.
			if _, err := f.svc.Login(ctx, tc.username, tc.password); err != nil {
				t.Fatalf("Login right after Register: %v", err)
			}
		})
	}
}

func TestRegisterUsernameTaken(t *testing.T) {
	f := newFixture(t)
	first := f.register(t, "alice")
	for _, name := range []string{"alice", "ALICE", " Alice ", "aLiCe\t"} {
		t.Run(name, func(t *testing.T) {
			tok, err := f.svc.Register(context.Background(), name, "another password")
			if !errors.Is(err, auth.ErrUsernameTaken) {
				t.Fatalf("Register(%q) = %+v, %v; want ErrUsernameTaken", name, tok, err)
			}
		})
	}
	// The original account is untouched: its password still works and the
	// id is the same.
	tok, err := f.svc.Login(context.Background(), "alice", goodPassword)
	if err != nil || tok.UserID != first.UserID {
		t.Fatalf("Login after refused duplicates = %+v, %v; want user %s", tok, err, first.UserID)
	}
	if _, err := f.svc.Login(context.Background(), "alice", "another password"); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("a refused duplicate's password logs in: %v", err)
	}
}

func TestRegisterConcurrentSameUsername(t *testing.T) {
	f := newFixture(t)
	const n = 8
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := f.svc.Register(context.Background(), []string{"racer", "RACER", " Racer"}[i%3], goodPassword)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	var ok, taken int
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, auth.ErrUsernameTaken):
			taken++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 || taken != n-1 {
		t.Fatalf("%d registrations succeeded and %d were taken, want 1 and %d", ok, taken, n-1)
	}
}

func TestLogin(t *testing.T) {
	f := newFixture(t)
	alice := f.register(t, "alice")
	tests := []struct {
		name     string
		username string
		password string
		wantErr  error
	}{
		{"right password", "alice", goodPassword, nil},
		{"username in another case", " ALICE ", goodPassword, nil},
		{"wrong password", "alice", goodPassword + "!", auth.ErrInvalidCredentials},
		{"password in another case", "alice", strings.ToUpper(goodPassword), auth.ErrInvalidCredentials},
		{"empty password", "alice", "", auth.ErrInvalidCredentials},
		{"unknown user", "mallory", goodPassword, auth.ErrInvalidCredentials},
		{"invalid username", "a!", goodPassword, auth.ErrInvalidCredentials},
		{"empty username", "", goodPassword, auth.ErrInvalidCredentials},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := f.svc.Login(context.Background(), tc.username, tc.password)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Login(%q) = %+v, %v; want %v", tc.username, tok, err, tc.wantErr)
				}
				var in *auth.InputError
				if errors.As(err, &in) {
					t.Fatalf("Login leaks input validation: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Login(%q): %v", tc.username, err)
			}
			f.checkTokens(t, tok, alice.UserID, accessTTL)
		})
	}

	// A wrong password and an unknown user must be indistinguishable.
	_, errWrong := f.svc.Login(context.Background(), "alice", "wrong password")
	_, errUnknown := f.svc.Login(context.Background(), "nobody", "wrong password")
	if errWrong == nil || errUnknown == nil || errWrong.Error() != errUnknown.Error() {
		t.Fatalf("wrong password error %q differs from unknown user error %q", errWrong, errUnknown)
	}
}

func TestRefresh(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	first := f.register(t, "alice")

	f.clock.Advance(time.Minute)
	second, err := f.svc.Refresh(ctx, first.RefreshToken)
	if err != nil {
		t.Fatalf("Refresh(refresh token): %v", err)
	}
	f.checkTokens(t, second, first.UserID, accessTTL)
	if second.AccessToken == first.AccessToken || second.RefreshToken == first.RefreshToken {
		t.Fatal("Refresh returned the same tokens")
	}
	// Two refreshes within one second still differ.
	third, err := f.svc.Refresh(ctx, second.RefreshToken)
	if err != nil {
		t.Fatalf("second Refresh: %v", err)
	}
	if third.AccessToken == second.AccessToken || third.RefreshToken == second.RefreshToken {
		t.Fatal("two refreshes in the same second returned identical tokens")
	}

	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"refresh with an access token", func() error { _, err := f.svc.Refresh(ctx, first.AccessToken); return err }, auth.ErrInvalidToken},
		{"authenticate with a refresh token", func() error { _, err := f.svc.Authenticate(ctx, first.RefreshToken); return err }, auth.ErrInvalidToken},
		{"refresh with garbage", func() error { _, err := f.svc.Refresh(ctx, "not.a.jwt"); return err }, auth.ErrInvalidToken},
		{"refresh with empty token", func() error { _, err := f.svc.Refresh(ctx, ""); return err }, auth.ErrInvalidToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}

	t.Run("expired refresh token", func(t *testing.T) {
		f.clock.Advance(refreshTTL + time.Second)
		if _, err := f.svc.Refresh(ctx, third.RefreshToken); !errors.Is(err, auth.ErrTokenExpired) {
			t.Fatalf("Refresh after refresh TTL: %v, want ErrTokenExpired", err)
		}
	})
}

func TestAccessTokenExpiry(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tok := f.register(t, "alice")

	steps := []struct {
		name    string
		advance time.Duration // from the previous step
		want    error
	}{
		{"fresh", 0, nil},
		{"just before expiry", accessTTL - time.Second, nil},
		{"just after expiry", 2 * time.Second, auth.ErrTokenExpired},
		{"long after expiry", 24 * time.Hour, auth.ErrTokenExpired},
	}
	for _, st := range steps {
		f.clock.Advance(st.advance)
		uid, err := f.svc.Authenticate(ctx, tok.AccessToken)
		if !errors.Is(err, st.want) {
			t.Fatalf("%s: Authenticate = %q, %v; want %v", st.name, uid, err, st.want)
		}
		if st.want == nil && uid != tok.UserID {
			t.Fatalf("%s: Authenticate = %q, want %q", st.name, uid, tok.UserID)
		}
	}
	// The refresh token outlives the access token and yields a working one.
	fresh, err := f.svc.Refresh(ctx, tok.RefreshToken)
	if err != nil {
		t.Fatalf("Refresh after the access token expired: %v", err)
	}
	f.checkTokens(t, fresh, tok.UserID, accessTTL)
}

// forge signs claims with method and key, outside the service.
func forge(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("forge token: %v", err)
	}
	return s
}

func TestForgedTokens(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	alice := f.register(t, "alice")
	bob := f.register(t, "bob")
	now := f.clock.Now()

	// valid returns claims the service would accept, edited by mod.
	valid := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{
			"typ": "access", "iss": "mqchat", "sub": alice.UserID, "sid": alice.SessionID, "jti": "forged-1",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		}
		if mod != nil {
			mod(c)
		}
		return c
	}
	otherSecret := []byte("ffffffffffffffffffffffffffffffff-other")

	// Flip one character of the payload, keeping the original signature.
	parts := strings.Split(alice.AccessToken, ".")
	if len(parts) != 3 {
		t.Fatalf("access token %q is not a JWS", alice.AccessToken)
	}
	payload := []byte(parts[1])
	payload[len(payload)/2] ^= 1
	tampered := parts[0] + "." + string(payload) + "." + parts[2]

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"control: well-formed and signed with the secret", forge(t, jwt.SigningMethodHS256, testSecret, valid(nil)), nil},
		{"another secret", forge(t, jwt.SigningMethodHS256, otherSecret, valid(nil)), auth.ErrInvalidToken},
		{"alg none", forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid(nil)), auth.ErrInvalidToken},
		{"alg none with empty signature stripped", strings.TrimSuffix(forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid(nil)), "."), auth.ErrInvalidToken},
		{"HS512 with the right secret", forge(t, jwt.SigningMethodHS512, testSecret, valid(nil)), auth.ErrInvalidToken},
		{"tampered payload", tampered, auth.ErrInvalidToken},
		{"wrong issuer", forge(t, jwt.SigningMethodHS256, testSecret, valid(func(c jwt.MapClaims) { c["iss"] = "someone-else" })), auth.ErrInvalidToken},
		{"no issuer", forge(t, jwt.SigningMethodHS256, testSecret, valid(func(c jwt.MapClaims) { delete(c, "iss") })), auth.ErrInvalidToken},
		{"no expiry", forge(t, jwt.SigningMethodHS256, testSecret, valid(func(c jwt.MapClaims) { delete(c, "exp") })), auth.ErrInvalidToken},
		{"no type", forge(t, jwt.SigningMethodHS256, testSecret, valid(func(c jwt.MapClaims) { delete(c, "typ") })), auth.ErrInvalidToken},
		{"refresh type", forge(t, jwt.SigningMethodHS256, testSecret, valid(func(c jwt.MapClaims) { c["typ"] = "refresh" })), auth.ErrInvalidToken},
		{"malformed subject", forge(t, jwt.SigningMethodHS256, testSecret, valid(func(c jwt.MapClaims) { c["sub"] = "../" + alice.UserID })), auth.ErrInvalidToken},
		{"no subject", forge(t, jwt.SigningMethodHS256, testSecret, valid(func(c jwt.MapClaims) { delete(c, "sub") })), auth.ErrInvalidToken},
		{"no session", forge(t, jwt.SigningMethodHS256, testSecret, valid(func(c jwt.MapClaims) { delete(c, "sid") })), auth.ErrInvalidToken},
		{"no token id", forge(t, jwt.SigningMethodHS256, testSecret, valid(func(c jwt.MapClaims) { delete(c, "jti") })), auth.ErrInvalidToken},
		{"unknown session", forge(t, jwt.SigningMethodHS256, testSecret, valid(func(c jwt.MapClaims) { c["sid"] = strings.Repeat("ab", 16) })), auth.ErrInvalidToken},
		{"another user's session", forge(t, jwt.SigningMethodHS256, testSecret, valid(func(c jwt.MapClaims) { c["sid"] = bob.SessionID })), auth.ErrInvalidToken},
		{"unknown user", forge(t, jwt.SigningMethodHS256, testSecret, valid(func(c jwt.MapClaims) { c["sub"] = ids.NewUserID() })), auth.ErrUnknownUser},
		{"expired", forge(t, jwt.SigningMethodHS256, testSecret, valid(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Second).Unix() })), auth.ErrTokenExpired},
		{"garbage", "garbage", auth.ErrInvalidToken},
		{"empty", "", auth.ErrInvalidToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			uid, err := f.svc.Authenticate(ctx, tc.token)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Authenticate = %q, %v; want %v", uid, err, tc.want)
			}
			if tc.want == nil && uid != alice.UserID {
				t.Fatalf("Authenticate = %q, want %q", uid, alice.UserID)
			}
			if tc.want != nil && uid != "" {
				t.Fatalf("refused token still returned user %q", uid)
			}
		})
	}
}

func TestIssueTokens(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	alice := f.register(t, "alice")
	tests := []struct {
		name    string
		ttl     time.Duration
		wantTTL time.Duration
	}{
		{"zero means configured", 0, accessTTL},
		{"negative means configured", -time.Hour, accessTTL},
		{"ninety seconds", 90 * time.Second, 90 * time.Second},
		{"one year for a device", 365 * 24 * time.Hour, 365 * 24 * time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fx := f.clock.Now()
			tok, err := f.svc.IssueTokens(ctx, " Alice ", tc.ttl)
			if err != nil {
				t.Fatalf("IssueTokens: %v", err)
			}
			f.checkTokens(t, tok, alice.UserID, tc.wantTTL)
			var c jwt.RegisteredClaims
			if _, _, err := jwt.NewParser().ParseUnverified(tok.AccessToken, &c); err != nil {
				t.Fatalf("parse issued token: %v", err)
			}
			if got, want := c.ExpiresAt.Time, fx.Add(tc.wantTTL).Truncate(time.Second); !got.Equal(want) {
				t.Fatalf("exp = %v, want %v", got, want)
			}
		})
	}

	t.Run("custom ttl is enforced", func(t *testing.T) {
		tok, err := f.svc.IssueTokens(ctx, "alice", 90*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(89 * time.Second)
		if _, err := f.svc.Authenticate(ctx, tok.AccessToken); err != nil {
			t.Fatalf("before the custom TTL: %v", err)
		}
		f.clock.Advance(2 * time.Second)
		if _, err := f.svc.Authenticate(ctx, tok.AccessToken); !errors.Is(err, auth.ErrTokenExpired) {
			t.Fatalf("after the custom TTL: %v, want ErrTokenExpired", err)
		}
	})
	t.Run("unknown user", func(t *testing.T) {
		if _, err := f.svc.IssueTokens(ctx, "nobody", 0); !errors.Is(err, auth.ErrUnknownUser) {
			t.Fatalf("err = %v, want ErrUnknownUser", err)
		}
	})
	t.Run("invalid username", func(t *testing.T) {
		_, err := f.svc.IssueTokens(ctx, "no way!", 0)
		wantInputError(t, err, "username")
	})
}

func TestPasswordsStoredAsBcrypt(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const password = "Sup3r-Secret-Passphrase-xyzzy"
	tok, err := f.svc.Register(ctx, "alice", password)
	if err != nil {
		t.Fatal(err)
	}
	u, err := f.store.UserByID(ctx, tok.UserID)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(u.PasswordHash, []byte(password)) {
		t.Fatal("stored password hash contains the password")
	}
	cost, err := bcrypt.Cost(u.PasswordHash)
	if err != nil {
		t.Fatalf("stored hash %q is not bcrypt: %v", u.PasswordHash, err)
	}
	if cost != testCost {
		t.Fatalf("bcrypt cost = %d, want the configured %d", cost, testCost)
	}
	if err := bcrypt.CompareHashAndPassword(u.PasswordHash, []byte(password)); err != nil {
		t.Fatalf("stored hash does not match the password: %v", err)
	}

	// Two users with the same password get different (salted) hashes.
	tok2, err := f.svc.Register(ctx, "bob", password)
	if err != nil {
		t.Fatal(err)
	}
	u2, err := f.store.UserByID(ctx, tok2.UserID)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(u.PasswordHash, u2.PasswordHash) {
		t.Fatal("the same password produced the same hash twice: no salt")
	}

	// Nothing the store wrote to disk holds the password in clear.
	err = filepath.WalkDir(f.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(raw, []byte(password)) {
			t.Errorf("%s holds the password in clear", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
