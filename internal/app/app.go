// Package app wires chatd together: it is the one place that picks backends
// from the configuration and connects the store, the services, the broker and
// its hooks, the REST API and the operator's admin socket.
package app

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mqchat/mqchat/api"
	"github.com/mqchat/mqchat/blob"
	"github.com/mqchat/mqchat/broker"
	"github.com/mqchat/mqchat/cluster"
	"github.com/mqchat/mqchat/hooks"
	"github.com/mqchat/mqchat/internal/config"
	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/internal/metrics"
	"github.com/mqchat/mqchat/internal/migrate"
	"github.com/mqchat/mqchat/internal/ratelimit"
	"github.com/mqchat/mqchat/services/accounts"
	"github.com/mqchat/mqchat/services/archive"
	"github.com/mqchat/mqchat/services/auth"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/services/consent"
	"github.com/mqchat/mqchat/services/devicemsg"
	"github.com/mqchat/mqchat/services/e2ekeys"
	"github.com/mqchat/mqchat/services/groups"
	"github.com/mqchat/mqchat/services/people"
	"github.com/mqchat/mqchat/services/presence"
	"github.com/mqchat/mqchat/services/push"
	"github.com/mqchat/mqchat/services/receipts"
	"github.com/mqchat/mqchat/services/retention"
	"github.com/mqchat/mqchat/services/visibility"
	"github.com/mqchat/mqchat/store"
	"github.com/mqchat/mqchat/store/cassandra"
	"github.com/mqchat/mqchat/store/compose"
	"github.com/mqchat/mqchat/store/pebble"
	"github.com/mqchat/mqchat/store/postgres"
	"github.com/mqchat/mqchat/web"
)

// App is a running chatd node.
type App struct {
	cfg      config.Config
	log      *slog.Logger
	store    store.Store
	auth     *auth.Service
	accounts *accounts.Service
	chat     *chat.Service
	receipts *receipts.Coalescer
	// deviceMsgs and deviceInbox: device-to-device messages and their
	// replay to a device that subscribes.
	deviceMsgs  *devicemsg.Service
	deviceInbox *hooks.DeviceInbox
	presence    *presence.Service
	// push and pushTracker are nil with push.provider none.
	push        *push.Service
	pushTracker *push.Tracker
	broker      *broker.Broker
	http        *http.Server
	httpLn      net.Listener
	pprof       *http.Server // nil unless http.pprof_addr is set (and not shared with metrics)
	pprofLn     net.Listener
	metrics     *http.Server // nil unless http.metrics_addr is set
	metricsLn   net.Listener
	admin       *adminServer
	lock        *dirLock       // the data dir, held until Shutdown
	stopEnders  chan struct{}  // closed by Shutdown: sessionEnder's second passes end
	enders      sync.WaitGroup // sessionEnder's second passes
	live        atomic.Bool
	// cluster is nil in single-node mode.
	cluster *cluster.Node
	// retention purges expired messages from Start until Shutdown.
	retention *retention.Service
	// blobs holds archives; nil unless archive.enabled.
	blobs         blob.Store
	stopRetention context.CancelFunc
	retentionDone chan struct{}
	ids           *ids.Generator
	// browsers: origins and TLS certificates (browsers.go).
	browsers *browserSetup
	// attach: uploads and their janitor (attachments.go).
	attach *attachmentsSetup
}

// Addrs are the addresses the node listens on, as bound.
type Addrs struct {
	MQTT, TLS, WS, HTTP, AdminSocket string
	Pprof                            string // "" when disabled
	Metrics                          string // "" when /metrics is on the HTTP API
}

// New builds a node from cfg without binding any port.

var _ broker.OutboundMetrics = (*metrics.Outbound)(nil)

func New(cfg config.Config, log *slog.Logger) (*App, error) {
	if err := privateDataDir(cfg.DataDir, log); err != nil {
		return nil, err
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	secret, err := jwtSecret(cfg)
	if err != nil {
		_ = lock.release()
		return nil, err
	}
	st, err := openStore(cfg, log)
	if err != nil {
		_ = lock.release()
		return nil, err
	}
	a := &App{cfg: cfg, log: log, store: st, lock: lock, stopEnders: make(chan struct{})}
	if err := a.build(secret); err != nil {
		if a.receipts != nil {
			a.receipts.Close()
		}
		if a.deviceMsgs != nil {
			a.deviceMsgs.Close()
		}
		if a.presence != nil {
			a.presence.Close() // its publishing workers
		}
		a.closePush()
		if a.cluster != nil {
			a.cluster.Close()
		}
		_ = st.Close()
		_ = lock.release()
		return nil, err
	}
	return a, nil
}

// openStore is where backends are chosen (store.relational and
// store.messages): one backend serving both halves is used as it is, two
// are joined by compose. Pending migrations are applied first when
// store.migrate_on_start is set.
func openStore(cfg config.Config, log *slog.Logger) (store.Store, error) {
	sc := cfg.Store
	if sc.MigrateOnStart {
		if err := migrate.Up(sc); err != nil {
			return nil, fmt.Errorf("app: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		opened []interface{ Close() error }
		pg     *postgres.Store
		pb     *pebble.Store
	)
	fail := func(err error) (store.Store, error) {
		for _, c := range opened {
			err = errors.Join(err, c.Close())
		}
		return nil, fmt.Errorf("app: open store: %w", err)
	}
	storeLog := log.With("component", "store")
	open := func(kind string) (compose.MessageLog, error) {
		switch kind {
		case "postgres":
			if pg == nil {
				s, err := postgres.Open(ctx, sc.Postgres.DSN, postgres.Options{Logger: storeLog})
				if err != nil {
					return nil, err
				}
				pg = s
				opened = append(opened, s)
			}
			return pg, nil
		case "cassandra":
			s, err := cassandra.Open(migrate.CassandraConfig(sc.Cassandra), cassandra.Options{})
			if err != nil {
				return nil, err
			}
			opened = append(opened, s)
			return s, nil
		default:
			if pb == nil {
				s, err := pebble.Open(filepath.Join(cfg.DataDir, "store"), pebble.Options{Logger: storeLog})
				if err != nil {
					return nil, err
				}
				pb = s
				opened = append(opened, s)
			}
			return pb, nil
		}
	}
	rel, err := open(sc.Relational)
	if err != nil {
		return fail(err)
	}
	msgs, err := open(sc.Messages)
	if err != nil {
		return fail(err)
	}
	if both, ok := rel.(store.Store); ok && len(opened) == 1 {
		return both, nil
	}
	relational, ok := rel.(compose.Relational)
	if !ok { // config validation admits only pebble and postgres here
		return fail(fmt.Errorf("%s cannot hold users, groups and devices", sc.Relational))
	}
	return compose.New(relational, msgs), nil
}

func (a *App) build(secret []byte) error {
	cfg := a.cfg
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	pipeline := metrics.NewPipeline(reg)
	limitMetrics := metrics.NewLimits(reg, append(hooks.LimitNames(), broker.LimitRestoredSubscriptions, groups.LimitGroupOps, people.LimitLookup, e2ekeys.LimitKeyClaim)...)

	sessionMetrics := metrics.NewSessions(reg)
	var err error
	accountMetrics := metrics.NewAccounts(reg)
	a.auth, err = auth.New(a.store, auth.Options{
		Secret: secret, AccessTTL: cfg.Auth.AccessTTL, RefreshTTL: cfg.Auth.RefreshTTL, BcryptCost: cfg.Auth.BcryptCost,
		Logger: a.log.With("component", "auth"), Metrics: sessionMetrics,
		Throttle: auth.NewThrottle(auth.ThrottleOptions{
			FreeFailures: cfg.Limits.LoginFailures, MaxDelay: cfg.Limits.LoginBackoffMax,
			OnThrottled: accountMetrics.LoginThrottled,
		}),
	})
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	if a.cluster, err = a.openCluster(reg); err != nil {
		return err
	}
	gen, err := a.generator()
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	a.ids = gen
	if a.browsers, err = a.newBrowserSetup(); err != nil {
		return err
	}

	a.broker, err = broker.New(broker.Options{
		TCPAddr: cfg.MQTT.Addr,
		TLSAddr: cfg.MQTT.TLSAddr, TLSCert: cfg.MQTT.TLSCert, TLSKey: cfg.MQTT.TLSKey, TLSConfig: tlsConfig(a.browsers.mqttTLS),
		WSAddr: cfg.MQTT.WSAddr, WSPath: cfg.MQTT.WSPath, WSTLSConfig: tlsConfig(a.browsers.wsTLS),
		Origins:             a.browsers.origins,
		SessionDir:          filepath.Join(cfg.DataDir, "sessions"),
		ClientWritesPending: cfg.MQTT.ClientWritesPending,
		MaxInflight:         cfg.MQTT.MaxInflight,
		ReceiveMaximum:      cfg.MQTT.ReceiveMaximum,
		SessionExpiry:       cfg.MQTT.SessionExpiry,
		// Larger than any valid send so an oversized one is refused by the
		// chat hook with 0x95 and an error event instead of a disconnect.
		MaxPacketSize:   uint32(4*cfg.Limits.MaxMessageBytes + 64<<10),
		Outbound:        broker.OutboundLimits{MaxBytes: cfg.MQTT.OutboundQueueBytes, StallTimeout: cfg.MQTT.StallTimeout},
		OutboundMetrics: metrics.NewOutbound(reg),
		Logger:          a.log.With("component", "broker"),
		// Restored sessions are held to the limits the Limits hook holds
		// live ones to.
		TopicAliasMaximum: cfg.MQTT.TopicAliasMaximum,
		MaxSubscriptions:  cfg.MQTT.MaxSubscriptions,
		MaxFilterBytes:    cfg.MQTT.MaxTopicBytes,
		KeepFirst:         hooks.OwnFilter,
		Limits:            limitMetrics,
	})
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	srv := a.broker.Server()
	reg.MustRegister(metrics.NewBrokerCollector(srv.Info))
	metrics.RegisterOutboundQueued(reg, a.broker.OutboundQueued)

	outbox := hooks.NewOutbox(srv, a.log.With("component", "outbox"), pipeline)
	// Each user's say over who reaches them (blocks, privacy settings,
	// message requests, group invitations): asked on 1:1 sends, typing
	// notices, group changes and presence, answered from memory.
	consentSvc := consent.New(a.store, consent.Options{
		MaxBlocks:    cfg.Limits.MaxBlocks,
		GroupInvites: cfg.Limits.GroupInvites,
		Logger:       a.log.With("component", "consent"),
		Changed:      a.consentChanged,
	})
	// Who may see whose presence, asked before every presence delivery:
	// answered from memory, kept exact by the groups service and the chat
	// writers, which report every membership change and every 1:1 chat's
	// first message.
	var vis *visibility.Index
	presenceMetrics := metrics.NewPresence(reg, pipeline, func() int { return vis.Len() }, func() int { return a.presence.Pending() })
	vis = visibility.New(a.store, visibility.Options{Size: cfg.Presence.VisibilityCacheSize, Metrics: presenceMetrics, Consent: consentSvc})
	consentSvc.SetRelations(vis)
	membership := a.clusterMembership(vis, consentSvc)
	var localPresence presence.LocalObserver
	if a.cluster != nil {
		localPresence = a.cluster
		outbox.SetRelay(a.cluster)
	}
	a.presence = presence.New(hooks.PresencePublisher{Server: srv}, presence.Options{
		Local:           localPresence,
		Grace:           cfg.Presence.Grace,
		Workers:         cfg.Presence.PublishWorkers,
		PublishInterval: cfg.Presence.PublishInterval,
		Logger:          a.log.With("component", "presence"),
		Metrics:         presenceMetrics,
	})
	if err := a.buildPush(reg, a.presence); err != nil {
		return err
	}
	var deliverer chat.Deliverer = outbox
	if a.pushTracker != nil {
		// The tracker sees each message before it is published, so no
		// PUBACK can beat its wait.
		deliverer = a.pushTracker.Wrap(outbox)
	}
	// Delivered (PUBACK of an inbox message) and read cursor moves, applied
	// and announced every flush interval.
	a.receipts = receipts.New(a.store, receipts.StoreMembers(a.store), outbox, receipts.Options{
		Logger:  a.log.With("component", "receipts"),
		Metrics: metrics.NewReceipts(reg),
	})
	// One budget for chat and device messages: a client cannot double its
	// send rate by alternating them.
	sendLimiter := limiter(cfg.Limits.SendRate, cfg.Limits.SendBurst)
	blobs, err := a.openBlobs()
	if err != nil {
		return err
	}
	// The archive (archive.enabled): what the purger writes before a
	// purge, and what history reads below a chat's live range.
	var (
		archived chat.Archive
		archiver retention.Archiver
	)
	if cfg.Archive.Enabled {
		archived, archiver = archive.NewReader(blobs), archive.NewWriter(blobs)
	}
	if err := a.buildAttachments(reg); err != nil {
		return err
	}
	a.chat = chat.New(a.store, deliverer, gen, chat.Options{
		Archive:         archived,
		List:            a.store,
		Receipts:        a.receipts,
		Started:         membership,
		Blocks:          consentSvc,
		Requests:        consentSvc,
		Attachments:     a.attach.svc,
		Router:          chatRouter(a.cluster),
		Fence:           chatFence(a.cluster),
		MaxMessageBytes: cfg.Limits.MaxMessageBytes,
		Limiter:         sendLimiter,
		Logger:          a.log.With("component", "chat"),
		Metrics:         pipeline,

		// 0 in the config turns edits off; 0 in chat.Options is the default.
		EditWindow:          cmp.Or(cfg.Limits.EditWindow, -1),
		ReactionsPerMessage: cfg.Limits.ReactionsPerMessage,
	})
	chats := chatLister(a.store)
	if chats == nil && (cfg.Retention.Default > 0 || cfg.Retention.Max > 0) {
		a.log.Warn("retention: the message store cannot list chats; retention.default and retention.max apply only to chats with a setting of their own")
	}
	a.retention = retention.New(a.store, retention.Options{
		Default: cfg.Retention.Default, Max: cfg.Retention.Max,
		Interval: cfg.Retention.Interval, Batch: cfg.Retention.Batch,
		Chats:    chats,
		Owner:    retentionOwnerOf(a.cluster),
		Archiver: archiver,
		Releaser: purgedAttachments{st: a.store, svc: a.attach.svc},
		Metrics:  metrics.NewRetention(reg),
		Logger:   a.log.With("component", "retention"),
	})
	a.attach.svc.SetChats(a.chat)
	// Per-device mailboxes for end-to-end encryption clients.
	a.deviceMsgs = devicemsg.New(a.store, outbox, devicemsg.Options{
		MaxBodyBytes: cfg.Limits.MaxMessageBytes,
		MaxPending:   cfg.Limits.DeviceMessagesPending,
		Limiter:      sendLimiter,
		Blocks:       consentSvc,
		Metrics:      metrics.NewDeviceMessages(reg),
		Logger:       a.log.With("component", "devicemsg"),
	})
	groupsSvc := groups.New(a.store, a.chat, outbox, groups.Options{
		MaxMembers: cfg.Limits.MaxGroupMembers,
		Membership: membership,
		Consent:    consentSvc,
		Logger:     a.log.With("component", "groups"),
		OpRate:     cfg.Limits.GroupOpRate,
		OpBurst:    cfg.Limits.GroupOpBurst,
		Metrics:    limitMetrics,
	})
	peopleSvc := people.New(a.store, vis, people.Options{
		LookupRate:  cfg.Limits.LookupRate,
		LookupBurst: cfg.Limits.LookupBurst,
		Metrics:     limitMetrics,
		Logger:      a.log.With("component", "people"),
	})
	// The end-to-end encryption key directory: public keys only, opaque
	// to the server.
	keysSvc := e2ekeys.New(a.store, consentSvc, outbox, e2ekeys.Options{
		MaxKeyBytes:       cfg.Limits.MaxKeyBytes,
		MaxOneTimePrekeys: cfg.Limits.MaxOneTimePrekeys,
		PrekeysLow:        cfg.Limits.PrekeysLow,
		ClaimRate:         cfg.Limits.KeyClaimRate,
		ClaimBurst:        cfg.Limits.KeyClaimBurst,
		Limits:            limitMetrics,
		Metrics:           metrics.NewE2EKeys(reg),
		Logger:            a.log.With("component", "e2ekeys"),
	})
	limitsHook := hooks.NewLimits(hooks.LimitOptions{
		Server:                 srv,
		Events:                 outbox,
		Logger:                 a.log.With("component", "mqtt-limits"),
		Metrics:                limitMetrics,
		MaxTopicBytes:          cfg.MQTT.MaxTopicBytes,
		MaxSubscriptions:       cfg.MQTT.MaxSubscriptions,
		MaxFiltersPerSubscribe: cfg.MQTT.MaxFiltersPerSubscribe,
		MaxConnectionsPerUser:  cfg.Limits.MaxConnectionsPerUser,
		DeviceConnects:         deviceConnects(cfg.Limits.DeviceConnects, cfg.Limits.DeviceConnectsWindow),
	})
	// Connections by session: closed when their session is revoked or
	// their access token expires.
	sessionsHook := hooks.NewSessions(hooks.SessionOptions{
		Identifier: mqttIdentifier{a.auth}, Server: srv, Logger: a.log.With("component", "mqtt-sessions"),
		Metrics: sessionMetrics,
	})
	a.auth.SetSessionCloser(sessionsHook)
	authHook := hooks.NewAuth(hooks.AuthOptions{
		Authenticator:  a.auth,
		Relations:      vis,
		AllowAnonymous: cfg.Auth.AllowAnonymous,
		KeepAliveMax:   uint16(cfg.MQTT.KeepAliveMax / time.Second),
		Server:         srv,
		Logger:         a.log.With("component", "mqtt-auth"),
		Metrics:        pipeline,
		ACLMetrics:     metrics.NewACL(reg),
		IsBadCredentials: func(err error) bool {
			return errors.Is(err, auth.ErrInvalidToken) || errors.Is(err, auth.ErrTokenExpired) || errors.Is(err, auth.ErrUnknownUser)
		},
		Limits:    limitsHook,
		Sessions:  sessionsHook,
		Admission: a.admission,
	})
	chatHook := hooks.NewChat(hooks.ChatOptions{
		Sender: a.chat, Events: outbox, Logger: a.log.With("component", "mqtt-chat"), Metrics: pipeline,
		Groups: groupsSvc, Sync: a.chat, Receipts: a.chat, Typing: a.chat, Server: srv,
		Consent: consentSvc, Keys: keysSvc, Devices: a.deviceMsgs,
		// One bound for both protocol versions: what a v5 client is told.
		SendWindow: int(srv.Options.Capabilities.ReceiveMaximum),
	})
	if err := srv.AddHook(authHook, nil); err != nil {
		return fmt.Errorf("app: add auth hook: %w", err)
	}
	if err := srv.AddHook(sessionsHook, nil); err != nil {
		return fmt.Errorf("app: add sessions hook: %w", err)
	}
	if err := srv.AddHook(chatHook, nil); err != nil {
		return fmt.Errorf("app: add chat hook: %w", err)
	}
	if err := srv.AddHook(limitsHook, nil); err != nil {
		return fmt.Errorf("app: add limits hook: %w", err)
	}
	metrics.RegisterPresence(reg, a.presence.Stats)
	presenceHook := hooks.NewPresence(a.presence)
	if err := srv.AddHook(presenceHook, nil); err != nil {
		return fmt.Errorf("app: add presence hook: %w", err)
	}
	delivered := hooks.Receivers{a.receipts}
	if a.pushTracker != nil {
		delivered = append(delivered, a.pushTracker)
	}
	if a.cluster != nil {
		if err := a.wireCluster(outbox, presenceHook, &delivered); err != nil {
			return err
		}
	}
	deliveryHook := hooks.NewDelivery(hooks.DeliveryOptions{Receiver: delivered, Devices: a.deviceMsgs, MaxInflight: cfg.MQTT.MaxInflight})
	if err := srv.AddHook(deliveryHook, nil); err != nil {
		return fmt.Errorf("app: add delivery hook: %w", err)
	}
	a.deviceInbox = hooks.NewDeviceInbox(hooks.DeviceInboxOptions{
		Replayer: a.deviceMsgs, Server: srv, Logger: a.log.With("component", "device-inbox"), MaxInflight: cfg.MQTT.MaxInflight,
	})
	if err := srv.AddHook(a.deviceInbox, nil); err != nil {
		return fmt.Errorf("app: add device inbox hook: %w", err)
	}

	a.accounts = accounts.New(accounts.Options{
		Store: a.store, Passwords: a.auth, Memberships: groupsSvc, Recipients: a.chat,
		Sessions: sessionEnder{auth: a.auth, again: 5 * time.Second, log: a.log.With("component", "accounts"),
			stop: a.stopEnders, pending: &a.enders},
		Metrics: accountMetrics,
		Logger:  a.log.With("component", "accounts"),
	})
	a.http = &http.Server{
		Handler: api.New(api.Options{
			Accounts: a.auth, Chats: a.chat, Groups: groupsSvc, Ready: a.ready,
			Discovery:       a.discover,
			Metrics:         publicMetrics(cfg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})),
			Logger:          a.log.With("component", "http"),
			MaxMessageBytes: cfg.Limits.MaxMessageBytes,
			AuthLimiter:     limiter(cfg.Limits.AuthRate, cfg.Limits.AuthBurst),
			Presence:        a.presence,
			Relations:       vis,
			Devices:         a.store,
			People:          peopleSvc,
			Sessions:        a.auth,
			Lifecycle:       a.accounts,
			Blocks:          consentSvc,
			Privacy:         consentSvc,
			ChatRequests:    consentSvc,
			Keys:            keysSvc,
			Invites:         inviteAPI{consentSvc, groupsSvc},
			DeviceMessages:  a.deviceMsgs,
			Retention:       a.retention,
			Attachments:     a.attach.svc,
			Origins:         a.browsers.origins,
			Web:             web.Handler(),
		}),
		TLSConfig:         tlsConfig(a.browsers.httpTLS),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	a.metrics = metricsServer(cfg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	if cfg.HTTP.PprofAddr != "" && cfg.HTTP.PprofAddr != cfg.HTTP.MetricsAddr {
		mux := http.NewServeMux()
		handlePprof(mux)
		// No WriteTimeout: a CPU profile streams for its whole duration.
		a.pprof = &http.Server{Addr: cfg.HTTP.PprofAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	}
	a.admin = newAdminServer(filepath.Join(cfg.DataDir, adminSocketName), nodeOperator{a.auth, a.accounts}, a.log.With("component", "admin"))
	a.admin.backup = func(ctx context.Context, to, version string) (BackupManifest, error) {
		return takeBackup(ctx, a.cfg, a.store, to, version)
	}
	return nil
}

// limiter returns nil, not a nil *ratelimit.Keyed, when unlimited, so
// consumers' nil checks on their interface work.
func limiter(perSecond, burst int) interface{ Allow(string) bool } {
	if k := ratelimit.New(perSecond, burst); k != nil {
		return k
	}
	return nil
}

// deviceConnects allows n CONNECTs per client id every window: a bucket of
// n refilled one token every window/n. nil when n is 0 (unlimited).
func deviceConnects(n int, window time.Duration) hooks.Limiter {
	if n <= 0 {
		return nil
	}
	return ratelimit.NewEvery(window/time.Duration(n), n)
}

func (a *App) ready(ctx context.Context) error {
	if !a.live.Load() {
		return errors.New("not started or shutting down")
	}
	if err := a.admission(); err != nil {
		return err
	}
	if err := a.store.Ping(ctx); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// Start binds every listener and starts serving.
func (a *App) Start() error {
	// The HTTP port is bound first: the cluster heartbeat advertises it
	// from the moment the node joins.
	ln, err := net.Listen("tcp", a.cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("app: listen http %s: %w", a.cfg.HTTP.Addr, err)
	}
	a.httpLn = ln
	if a.cluster != nil {
		// Joined before the first client: sends are routed from the start.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := a.cluster.Start(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("app: %w", err)
		}
	}
	if err := a.broker.Start(); err != nil {
		return fmt.Errorf("app: start broker: %w", err)
	}
	a.restorePresence()
	// Pages chatd serves on one of its ports may use the others.
	a.browsers.origins.AddOwnPort(ln.Addr().String())
	if ws := a.broker.Addrs().WS; ws != "" {
		a.browsers.origins.AddOwnPort(ws)
	}
	a.browsers.watch()
	go func() {
		serve := a.http.Serve
		if a.http.TLSConfig != nil {
			// The certificate comes from TLSConfig; ServeTLS adds HTTP/2.
			serve = func(ln net.Listener) error { return a.http.ServeTLS(ln, "", "") }
		}
		if err := serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("http server stopped", "error", err)
		}
	}()
	if a.pprof != nil {
		pln, err := net.Listen("tcp", a.pprof.Addr)
		if err != nil {
			return fmt.Errorf("app: listen pprof %s: %w", a.pprof.Addr, err)
		}
		a.pprofLn = pln
		go func() {
			if err := a.pprof.Serve(pln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("pprof server stopped", "error", err)
			}
		}()
		a.log.Warn("serving pprof profiles", "addr", pln.Addr().String())
	}
	if err := a.startMetrics(); err != nil {
		return err
	}
	if err := a.admin.start(); err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(context.Background())
	a.stopRetention, a.retentionDone = cancel, make(chan struct{})
	go func() {
		defer close(a.retentionDone)
		a.retention.Run(rctx)
	}()
	a.attach.start(a.cfg.Attachments.UnreferencedTTL)
	a.live.Store(true)
	addrs := a.Addrs()
	a.log.Info("chatd started", "mqtt", addrs.MQTT, "ws", addrs.WS, "tls", addrs.TLS, "http", addrs.HTTP, "data_dir", a.cfg.DataDir)
	return nil
}

// restorePresence hands the retained presence/{uid} messages the session
// store brought back to the presence service, which gives every user shown
// online a grace period to reconnect.
func (a *App) restorePresence() {
	for _, pk := range a.broker.RetainedMessages(hooks.PresenceTopic("+")) {
		uid := strings.TrimPrefix(pk.TopicName, hooks.PresenceTopic(""))
		if uid != "" && !strings.Contains(uid, "/") {
			a.presence.Restore(uid, pk.Payload)
		}
	}
}

// Store returns the node's store, for tests and tools that seed data in the
// running process (the embedded store is locked by it). Writes made here
// bypass the services, and so reach no in-memory cache: seed before use.
func (a *App) Store() store.Store { return a.store }

// Addrs returns the bound addresses.
func (a *App) Addrs() Addrs {
	b := a.broker.Addrs()
	out := Addrs{MQTT: b.TCP, TLS: b.TLS, WS: b.WS, AdminSocket: a.admin.path}
	if a.httpLn != nil {
		out.HTTP = a.httpLn.Addr().String()
	}
	if a.pprofLn != nil {
		out.Pprof = a.pprofLn.Addr().String()
	}
	if a.metricsLn != nil {
		out.Metrics = a.metricsLn.Addr().String()
		if a.cfg.HTTP.PprofAddr == a.cfg.HTTP.MetricsAddr {
			out.Pprof = out.Metrics
		}
	}
	return out
}

// Shutdown stops accepting work, lets in-flight sends finish and closes the
// store. The order matters: transports first, then the pipeline drains, then
// the store it writes to.
func (a *App) Shutdown(ctx context.Context) error {
	a.live.Store(false)
	var errs []error
	if err := a.http.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("http: %w", err))
	}
	if a.pprof != nil {
		if err := a.pprof.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("pprof: %w", err))
		}
	}
	if a.metrics != nil {
		if err := a.metrics.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("metrics: %w", err))
		}
	}
	a.admin.stop(ctx)
	// Before the broker disconnects every client: shutdown is no departure.
	// The retained aggregates stay as they are and Start's restore gives
	// each online user a grace period to come back.
	a.presence.Close()
	if err := a.broker.Close(); err != nil {
		errs = append(errs, fmt.Errorf("broker: %w", err))
	}
	a.chat.Close()
	if a.stopRetention != nil {
		// Before the store closes: a pass in progress ends at its next
		// store call.
		a.stopRetention()
		<-a.retentionDone
	}
	a.deviceInbox.Wait() // replays end with their clients, closed above
	a.deviceMsgs.Close() // its queued acknowledgements, before the store
	if a.cluster != nil {
		// Once this node's writers are drained: the others take its chats
		// at once instead of after the TTL.
		a.cluster.Leave(ctx)
	}
	select {
	case <-a.stopEnders: // a second Shutdown
	default:
		close(a.stopEnders)
	}
	a.enders.Wait()    // a pending second revocation uses the store
	a.receipts.Close() // after every source of moves, before the store
	a.closePush()      // after fan-out stopped queueing, before the store
	if a.cluster != nil {
		a.cluster.Close()
	}
	a.browsers.stop()
	a.attach.stop()
	if err := a.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("store: %w", err))
	}
	if err := a.lock.release(); err != nil {
		errs = append(errs, fmt.Errorf("data dir lock: %w", err))
	}
	a.log.Info("chatd stopped")
	return errors.Join(errs...)
}

// jwtSecret returns the configured secret or the one kept in the data dir,
// generating it on first start so tokens survive restarts.
func jwtSecret(cfg config.Config) ([]byte, error) {
	if cfg.Auth.JWTSecret != "" {
		if len(cfg.Auth.JWTSecret) < 32 {
			return nil, errors.New(`config: invalid value for "auth.jwt_secret": must be at least 32 characters`)
		}
		return []byte(cfg.Auth.JWTSecret), nil
	}
	path := filepath.Join(cfg.DataDir, "jwt.secret")
	b, err := os.ReadFile(path)
	if err == nil {
		s := strings.TrimSpace(string(b))
		if len(s) < 32 {
			return nil, fmt.Errorf("app: %s holds a secret shorter than 32 characters", path)
		}
		return []byte(s), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("app: read jwt secret: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("app: generate jwt secret: %w", err)
	}
	s := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("app: write jwt secret: %w", err)
	}
	return []byte(s), nil
}

// inviteAPI serves /v1/invites: the list from consent, accepting and
// declining through the groups service (as over MQTT).
type inviteAPI struct {
	consent *consent.Service
	*groups.Service
}

func (i inviteAPI) Invites(ctx context.Context, uid string) ([]store.GroupInvite, error) {
	return i.consent.Invites(ctx, uid)
}
