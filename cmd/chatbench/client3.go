package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
)

// MQTT 3.1.1 clients are paho.mqtt.golang, the other Eclipse client: the
// version most deployed devices still speak, through a library of its own
// rather than paho.golang told to lie about its version. Its own redial is
// off: a lost connection goes through client.lost like a v5 one, so
// reconnects are counted the same way.

// mqtt3Version is --mqtt-version's name for MQTT 3.1.1.
const mqtt3Version = "3.1.1"

// connect3 dials through cl's dialer, logs in with a clean session and
// subscribes, then makes the connection cl's current one.
func (cl *client) connect3() error {
	opts := mqtt3.NewClientOptions().
		AddBroker("tcp://" + cl.addr).
		SetClientID(cl.id.ClientID).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetKeepAlive(60 * time.Second).
		SetAutoReconnect(false).
		SetConnectTimeout(30 * time.Second).
		SetConnectionLostHandler(func(mqtt3.Client, error) { cl.lost() }).
		SetCustomOpenConnectionFn(func(*url.URL, mqtt3.ClientOptions) (net.Conn, error) {
			return cl.d.dial(cl.ctx, cl.addr)
		})
	if cl.id.Username != "" {
		opts.SetUsername(cl.id.Username).SetPassword(cl.id.Password)
	}
	c := mqtt3.NewClient(opts)
	tok := c.Connect()
	if err := wait3(cl.ctx, tok, 30*time.Second); err != nil {
		if ct, ok := tok.(*mqtt3.ConnectToken); ok && ct.ReturnCode() != 0 {
			return fmt.Errorf("connect %s: %w", cl.id.ClientID, &refusedError{what: "connect", code: ct.ReturnCode()})
		}
		return fmt.Errorf("connect %s: %w", cl.id.ClientID, err)
	}
	if len(cl.id.Subs) > 0 {
		filters := map[string]byte{}
		for _, t := range cl.id.Subs {
			filters[t] = 1
		}
		var h mqtt3.MessageHandler
		if cl.onMsg != nil {
			h = func(_ mqtt3.Client, m mqtt3.Message) {
				cl.onMsg(&paho.Publish{Topic: m.Topic(), QoS: m.Qos(), Payload: m.Payload()})
			}
		}
		tok := c.SubscribeMultiple(filters, h)
		if err := wait3(cl.ctx, tok, 30*time.Second); err != nil {
			c.Disconnect(0)
			return fmt.Errorf("subscribe %s: %w", cl.id.ClientID, err)
		}
		for _, rc := range tok.(*mqtt3.SubscribeToken).Result() {
			if rc >= 0x80 {
				c.Disconnect(0)
				return fmt.Errorf("subscribe %s: %w", cl.id.ClientID, &refusedError{what: "subscribe", code: rc})
			}
		}
	}
	cl.mu.Lock()
	cl.cur3 = c
	cl.mu.Unlock()
	return nil
}

// publish3 sends one QoS 1 message and waits for its PUBACK. MQTT 3.1.1
// has no refusing PUBACK: a server that refuses a send closes the
// connection, which shows up as an error here and a reconnect.
func publish3(ctx context.Context, c mqtt3.Client, topic string, payload []byte) error {
	return wait3(ctx, c.Publish(topic, 1, false, payload), 0)
}

// wait3 waits for tok under ctx and, when limit is set, at most limit.
func wait3(ctx context.Context, tok mqtt3.Token, limit time.Duration) error {
	var timeout <-chan time.Time
	if limit > 0 {
		t := time.NewTimer(limit)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-timeout:
		return fmt.Errorf("no answer within %s", limit)
	}
}
