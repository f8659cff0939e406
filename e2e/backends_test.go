package e2e

import (
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/mqchat/mqchat/internal/config"
	"github.com/mqchat/mqchat/internal/pgtest"
	"github.com/mqchat/mqchat/migrations"
)

// onPostgres are the end-to-end tests that also run with PostgreSQL
// holding every aggregate (store.relational = store.messages = postgres):
// 1:1 and group messaging, sync, receipts, dedupe, device tokens and
// pushes, presence visibility through every membership path, blocking,
// privacy settings, message requests and group invitations, the end-to-end
// encryption key directory (concurrent claims) and the end-to-end
// encryption proof with real cryptography, a SIGKILL and
// restart of the real binary, chatd migrate, and sessions (refresh-token
// reuse, logout, logout everywhere, password change, token expiry),
// retention (attachments purged with their messages, on both blob
// backends), group attachment access and the archive round trip. Each
// runs unchanged as a subtest of TestOnPostgres; the harness sees the prefix in t.Name() and points the
// node at a fresh database (backend below).
var onPostgres = []struct {
	name string
	test func(*testing.T)
}{
	{"DirectMessaging", TestDirectMessagingAcrossVersionsAndTransports},
	{"SendOverHTTP", TestSendOverHTTP},
	{"EndToEndEncryption", TestEndToEndEncryption},
	{"GroupLifecycle", TestGroupLifecycle},
	{"MQTTGroupOps", TestMQTTGroupOps},
	{"OfflineCatchUp", TestOfflineDeviceCatchesUpWithChatListAndHistory},
	{"MQTTSync", TestMQTTSync},
	{"DirectReceipts", TestDirectReceipts},
	{"GroupReceipts", TestGroupReceiptsCoalesced},
	{"UnreadAcrossDevices", TestUnreadExactAcrossDevices},
	{"RetriedSend", TestRetriedSendIsStoredAndDeliveredOnce},
	{"Kill9Restart", TestKill9KeepsEveryAcknowledgedMessage},
	{"DeviceTokens", TestDeviceTokensREST},
	{"PushOffline", TestPushOfflineRecipient},
	{"PushUnregisteredToken", TestPushUnregisteredTokenDeleted},
	{"PresenceVisibility", TestPresenceVisibilityFollowsMembership},
	{"MigrateCLI", testMigrateCLI},
	{"HostileStrings", TestHostileStringsAreRefusedNotFailed},
	{"RandomUserIDs", TestRegisteredIDsAreNotSequential},
	{"NoExistenceOracle", TestNoSilentExistenceOracle},
	{"FindPeople", TestFindPeopleByUsername},
	{"LookupRateLimited", TestUsernameLookupRateLimited},
	{"ProfileVisibility", TestProfileVisibility},
	{"RefreshReuse", TestRefreshTokenReuseRevokesSession},
	{"ConcurrentRefresh", TestConcurrentRefreshesWithOneToken},
	{"Logout", TestLogoutEndsOnlyThisSession},
	{"LogoutAll", TestLogoutAllClosesEveryConnection},
	{"PasswordChange", TestPasswordChangeRevokesOtherSessions},
	{"TokenExpiryClosesConnection", TestConnectionClosedWhenTokenExpires},
	{"LoginThrottledPerAccount", TestLoginThrottledPerAccount},
	{"DeleteAccount", TestDeleteAccount},
	{"DisableAccountCLI", TestDisableAndDeleteThroughCLI},
	{"GroupRaces", TestGroupLimitsHoldUnderConcurrentRequests},
	{"CleanInput", TestCleanInputRefused},
	{"PrivateDataDir", TestDataDirIsPrivate},
	{"MetricsListener", TestMetricsOnOwnListener},
	{"BlockedUserReachesNothing", TestBlockedUserReachesNothing},
	{"BlockRequests", TestBlockRequests},
	{"BlockedSenderIsNotPushed", TestBlockedSenderIsNotPushed},
	{"PresenceSettingNobody", TestPresenceSettingNobody},
	{"MessageRequests", TestMessageRequests},
	{"GroupInviteConsent", TestGroupInviteConsent},
	{"E2EKeysREST", TestE2EKeysREST},
	{"DeviceMessagesOfflineDevice", TestDeviceMessagesOfflineDevice},
	{"DeviceMessageDedupeAndQuota", TestDeviceMessageDedupeAndQuota},
	{"DeviceMessagesREST", TestDeviceMessagesREST},
	{"MessageLifecycle", TestMessageLifecycle},
	{"RetentionGroup", TestRetentionGroup},
	{"RetentionDirect", TestRetentionDirect},
	{"RetentionAttachments", func(t *testing.T) { testRetentionAttachments(t, func(*config.Config) {}) }},
	{"RetentionAttachmentsS3", func(t *testing.T) {
		testRetentionAttachments(t, func(c *config.Config) { c.Blob = fakeS3(t) })
	}},
	{"AttachmentsGroup", func(t *testing.T) { testAttachmentsGroup(t, func(*config.Config) {}) }},
	{"ArchiveRoundTrip", TestArchiveRoundTrip},
}

const postgresPrefix = "TestOnPostgres/"

func TestOnPostgres(t *testing.T) {
	for _, c := range onPostgres {
		t.Run(c.name, c.test)
	}
}

var pgDSNs struct {
	sync.Mutex
	byTest map[string]string
}

// backend reports the store settings for t: nil for the embedded default,
// else the PostgreSQL ones. Every node and CLI run of one test (restarts
// included) shares one database, created on first use.
func backend(t *testing.T) map[string]string {
	name := t.Name()
	if !strings.HasPrefix(name, postgresPrefix) {
		return nil
	}
	// The case is the first path element after the prefix; its subtests
	// share its database.
	key, _, _ := strings.Cut(strings.TrimPrefix(name, postgresPrefix), "/")
	pgDSNs.Lock()
	defer pgDSNs.Unlock()
	dsn, ok := pgDSNs.byTest[key]
	if !ok {
		dsn = pgtest.DSN(t)
		if pgDSNs.byTest == nil {
			pgDSNs.byTest = map[string]string{}
		}
		pgDSNs.byTest[key] = dsn
		t.Cleanup(func() {
			pgDSNs.Lock()
			delete(pgDSNs.byTest, key)
			pgDSNs.Unlock()
		})
	}
	return map[string]string{
		"store.relational":   "postgres",
		"store.messages":     "postgres",
		"store.postgres.dsn": dsn,
	}
}

// useBackend applies backend(t) to an in-process node's config.
func useBackend(t *testing.T, cfg *config.Config) {
	b := backend(t)
	if b == nil {
		return
	}
	cfg.Store.Relational, cfg.Store.Messages = b["store.relational"], b["store.messages"]
	cfg.Store.Postgres.DSN = b["store.postgres.dsn"]
}

// backendEnv is backend(t) as MQCHAT_* variables for a chatd process.
func backendEnv(t *testing.T) []string {
	var env []string
	for k, v := range backend(t) {
		env = append(env, "MQCHAT_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))+"="+v)
	}
	return env
}

// testMigrateCLI drives `chatd migrate` on the configured database (the
// template it was cloned from is migrated already).
func testMigrateCLI(t *testing.T) {
	latest, previous := postgresVersions(t)
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"migrate", "version"}, latest},
		{[]string{"migrate", "up"}, latest},
		{[]string{"migrate", "down"}, previous},
		{[]string{"migrate", "version"}, previous},
		{[]string{"migrate", "up"}, latest},
	}
	for _, st := range steps {
		r := runChatd(t, nil, st.args...)
		if r.code != 0 || r.stdout != st.want {
			t.Fatalf("want exit 0 and %q: %v", st.want, r)
		}
	}
	// And the schema it left serves a node.
	s := startServer(t, nil)
	s.register(t, "after-migrations")
}

// postgresVersions returns what `chatd migrate version` prints at the
// newest embedded PostgreSQL migration and one step below it (down reverts
// one migration), read from the migration files themselves.
func postgresVersions(t *testing.T) (latest, previous string) {
	t.Helper()
	names, err := fs.Glob(migrations.Postgres(), "*.up.sql")
	if err != nil {
		t.Fatal(err)
	}
	var versions []int
	for _, n := range names {
		v, err := strconv.Atoi(strings.SplitN(n, "_", 2)[0])
		if err != nil {
			t.Fatalf("migration %s: %v", n, err)
		}
		versions = append(versions, v)
	}
	slices.Sort(versions)
	prev := 0
	if len(versions) > 1 {
		prev = versions[len(versions)-2]
	}
	return fmt.Sprintf("postgres: version %d\n", versions[len(versions)-1]), fmt.Sprintf("postgres: version %d\n", prev)
}
