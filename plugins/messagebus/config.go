package messagebus

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/internal/zmtp"
)

// Config is the message_bus section of core.yaml:
//
//	message_bus:
//	  publish_address: tcp://127.0.0.1:5555    # publishers connect here
//	  subscribe_address: tcp://127.0.0.1:5556  # subscribers connect here
//	  max_message_bytes: 1048576
//	  subscriber_queue: 10000     # per-subscriber high-water mark at the broker
//	  subscriber_queue_bytes: 1048576 # and its bound in bytes
//	  queue_bytes: 4194304        # all subscribers' queues together
//	  read_bytes: 8388608         # messages being read from external peers, together
//	  read_wait: 5s               # a frame waits this long for room in read_bytes
//	  message_timeout: 10s        # from a message's first header to its last byte
//	  publish_rate: 10000         # messages/s read from one external publisher
//	  publish_bytes_rate: 8388608 # bytes/s read from one external publisher
//	  subscribe_rate: 1000        # subscriptions/s read from one external subscriber
//	  max_subscriptions: 1024     # distinct prefixes per subscriber
//	  write_timeout: 10s          # a subscriber whose writes block this long is disconnected
//	  max_connections: 128        # publishers and subscribers together
//	  idle_timeout: 5m            # a connection with no traffic either way this long is closed
//	  client_queue: 10000         # publish high-water mark of in-agent clients
//	  subscription_queue: 1024    # per-subscription channel of in-agent clients
//	  lifecycle_events: true      # publish lifecycle.<plugin>
//	  permissions:                # in-agent plugins; default: own namespace, logs and the topics it uses (bus.TopicUser)
//	    ext_manager: {publish: ["ext_manager.", "logs.", "health."], subscribe: ["plugin.", "health."]}
//	  auth:                       # ZeroMQ PLAIN for external processes; absent: NULL
//	    users:
//	      - username: gpu_probe
//	        password_env: VITALS_BUS_GPU_PROBE_PASSWORD
//	        permissions: {publish: ["plugin.", "health.response", "logs."], subscribe: ["health.request.gpu_probe"]}
//
// VITALS_BUS_PUBLISH_ADDRESS and VITALS_BUS_SUBSCRIBE_ADDRESS override the
// two addresses, as VITALS_LISTEN_ADDRESS overrides the agent's listener.
type Config struct {
	PublishAddress       string                     `yaml:"publish_address" env:"BUS_PUBLISH_ADDRESS, overwrite"`
	SubscribeAddress     string                     `yaml:"subscribe_address" env:"BUS_SUBSCRIBE_ADDRESS, overwrite"`
	MaxMessageBytes      int                        `yaml:"max_message_bytes"`
	SubscriberQueue      int                        `yaml:"subscriber_queue"`
	SubscriberQueueBytes int                        `yaml:"subscriber_queue_bytes"`
	QueueBytes           int                        `yaml:"queue_bytes"`
	ReadBytes            int                        `yaml:"read_bytes"`
	ReadWait             agent.Duration             `yaml:"read_wait"`
	MessageTimeout       agent.Duration             `yaml:"message_timeout"`
	PublishRate          int                        `yaml:"publish_rate"`
	PublishBytesRate     int                        `yaml:"publish_bytes_rate"`
	SubscribeRate        int                        `yaml:"subscribe_rate"`
	MaxSubscriptions     int                        `yaml:"max_subscriptions"`
	WriteTimeout         agent.Duration             `yaml:"write_timeout"`
	MaxConnections       int                        `yaml:"max_connections"`
	IdleTimeout          agent.Duration             `yaml:"idle_timeout"`
	ClientQueue          int                        `yaml:"client_queue"`
	SubscriptionQueue    int                        `yaml:"subscription_queue"`
	HandshakeTimeout     agent.Duration             `yaml:"handshake_timeout"`
	LifecycleEvents      bool                       `yaml:"lifecycle_events"`
	Permissions          map[string]bus.Permissions `yaml:"permissions"`
	Auth                 *AuthConfig                `yaml:"auth"`
}

// AuthConfig turns on ZeroMQ PLAIN authentication on both broker sockets.
type AuthConfig struct {
	Users []User `yaml:"users"`
}

// User is one set of PLAIN credentials for an external process.
type User struct {
	Username string `yaml:"username"`
	// Password, or PasswordEnv naming the environment variable holding it.
	Password    string `yaml:"password"`
	PasswordEnv string `yaml:"password_env"`
	// Permissions of the process; default: ExternalPermissions(username).
	Permissions *bus.Permissions `yaml:"permissions"`
}

// DefaultConfig returns the defaults that a section overrides.
func DefaultConfig() Config {
	return Config{
		PublishAddress:       bus.DefaultPublishEndpoint,
		SubscribeAddress:     bus.DefaultSubscribeEndpoint,
		MaxMessageBytes:      bus.DefaultMaxMessageBytes,
		SubscriberQueue:      10000,
		SubscriberQueueBytes: 1 << 20,
		QueueBytes:           4 << 20,
		ReadBytes:            8 << 20,
		ReadWait:             agent.Duration(5 * time.Second),
		MessageTimeout:       agent.Duration(10 * time.Second),
		PublishRate:          10000,
		PublishBytesRate:     8 << 20,
		SubscribeRate:        1000,
		MaxSubscriptions:     1024,
		WriteTimeout:         agent.Duration(10 * time.Second),
		MaxConnections:       128,
		IdleTimeout:          agent.Duration(5 * time.Minute),
		ClientQueue:          bus.DefaultQueueSize,
		SubscriptionQueue:    bus.DefaultSubscriptionSize,
		HandshakeTimeout:     agent.Duration(5 * time.Second),
		LifecycleEvents:      true,
	}
}

// ExternalPermissions is what an authenticated external process may do when
// config does not say: publish in its namespace, logs, announcements,
// heartbeats, goodbyes and health answers; subscribe to its namespace and
// to health requests addressed to it. Whatever permissions say, topics
// only the agent publishes (bus.AgentOnly) are refused from external
// processes.
func ExternalPermissions(user string) bus.Permissions {
	return bus.Permissions{
		Publish:   []string{user + ".", "logs.", "plugin.", "health.response"},
		Subscribe: []string{user + ".", "health.request." + user},
	}
}

// validate checks values that decoding cannot.
func (c *Config) validate(s agent.Section) error {
	var errs []error
	bad := func(err error) { errs = append(errs, err) }
	if _, _, err := zmtp.Endpoint(c.PublishAddress); err != nil {
		bad(s.Errorf("publish_address", "%v", err))
	}
	if _, _, err := zmtp.Endpoint(c.SubscribeAddress); err != nil {
		bad(s.Errorf("subscribe_address", "%v", err))
	}
	if c.PublishAddress == c.SubscribeAddress {
		bad(s.Errorf("subscribe_address", "must differ from publish_address %s", c.PublishAddress))
	}
	if c.MaxMessageBytes < 1024 || c.MaxMessageBytes > 256<<20 {
		bad(s.Errorf("max_message_bytes", "must be between 1024 and %d, got %d", 256<<20, c.MaxMessageBytes))
	}
	for key, v := range map[string]int{"subscriber_queue": c.SubscriberQueue, "client_queue": c.ClientQueue, "subscription_queue": c.SubscriptionQueue} {
		if v < 1 || v > 10_000_000 {
			bad(s.Errorf(key, "must be between 1 and 10000000, got %d", v))
		}
	}
	if c.HandshakeTimeout.D() <= 0 {
		bad(s.Errorf("handshake_timeout", "must be positive, got %s", c.HandshakeTimeout))
	}
	if c.WriteTimeout.D() <= 0 {
		bad(s.Errorf("write_timeout", "must be positive, got %s", c.WriteTimeout))
	}
	if c.IdleTimeout.D() <= 0 {
		bad(s.Errorf("idle_timeout", "must be positive, got %s", c.IdleTimeout))
	}
	if c.MaxConnections < 2 || c.MaxConnections > 1_000_000 {
		bad(s.Errorf("max_connections", "must be between 2 and 1000000, got %d", c.MaxConnections))
	}
	if c.SubscriberQueueBytes < c.MaxMessageBytes {
		bad(s.Errorf("subscriber_queue_bytes", "must hold one message of max_message_bytes (%d), got %d", c.MaxMessageBytes, c.SubscriberQueueBytes))
	}
	if c.QueueBytes < c.SubscriberQueueBytes {
		bad(s.Errorf("queue_bytes", "must be at least subscriber_queue_bytes (%d), got %d", c.SubscriberQueueBytes, c.QueueBytes))
	}
	if c.ReadBytes < c.MaxMessageBytes {
		bad(s.Errorf("read_bytes", "must hold one message of max_message_bytes (%d), got %d", c.MaxMessageBytes, c.ReadBytes))
	}
	if c.ReadWait.D() <= 0 {
		bad(s.Errorf("read_wait", "must be positive, got %s", c.ReadWait))
	}
	if c.MessageTimeout.D() <= 0 {
		bad(s.Errorf("message_timeout", "must be positive, got %s", c.MessageTimeout))
	}
	for key, v := range map[string]int{"publish_rate": c.PublishRate, "publish_bytes_rate": c.PublishBytesRate, "subscribe_rate": c.SubscribeRate} {
		if v < 1 {
			bad(s.Errorf(key, "must be positive, got %d", v))
		}
	}
	if c.MaxSubscriptions < 1 || c.MaxSubscriptions > 1_000_000 {
		bad(s.Errorf("max_subscriptions", "must be between 1 and 1000000, got %d", c.MaxSubscriptions))
	}
	for name, p := range c.Permissions {
		if !agent.ValidName(name) {
			bad(s.Errorf("permissions."+name, "%q is not a plugin name", name))
		}
		if err := checkPrefixes(p); err != nil {
			bad(s.Errorf("permissions."+name, "%v", err))
		}
	}
	if c.Auth != nil {
		if len(c.Auth.Users) == 0 {
			bad(s.Errorf("auth.users", "auth needs at least one user"))
		}
		seen := map[string]bool{}
		for i, u := range c.Auth.Users {
			key := fmt.Sprintf("auth.users[%d]", i)
			if u.Username == "" || len(u.Username) > 255 {
				bad(s.Errorf(key, "username must be 1..255 bytes"))
			}
			if seen[u.Username] {
				bad(s.Errorf(key, "duplicate username %q", u.Username))
			}
			seen[u.Username] = true
			if (u.Password == "") == (u.PasswordEnv == "") {
				bad(s.Errorf(key, "set exactly one of password and password_env"))
			}
			if len(u.Password) > 255 {
				bad(s.Errorf(key, "password must be at most 255 bytes"))
			}
			if u.Permissions != nil {
				if err := checkPrefixes(*u.Permissions); err != nil {
					bad(s.Errorf(key+".permissions", "%v", err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

func checkPrefixes(p bus.Permissions) error {
	for _, list := range [][]string{p.Publish, p.Subscribe} {
		for _, pre := range list {
			if pre == "" || strings.ContainsAny(pre, " \t\n") {
				return fmt.Errorf("bad prefix %q: use a non-empty topic prefix, or \"*\" for all", pre)
			}
		}
	}
	return nil
}

// password resolves a user's password, read from the config's environment
// by secrets when the user names a variable.
func (u User) password(secrets agent.Secrets) (string, error) {
	if u.PasswordEnv == "" {
		return u.Password, nil
	}
	p, err := secrets.Read("", u.PasswordEnv, 0)
	if err != nil {
		return "", fmt.Errorf("bus user %q: %w", u.Username, err)
	}
	return string(p), nil
}
