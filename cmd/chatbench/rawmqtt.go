package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// Bare MQTT 5 sessions: paho's packet codec over a socket, no client
// goroutines. The connections scenario holds tens of thousands of them, and
// the attackers of the abuse scenario need to write what no well-behaved
// client library would (unknown aliases, oversized or malformed packets),
// or to never read at all.

// handshakeTimeout bounds a CONNECT or SUBSCRIBE round trip.
const handshakeTimeout = 30 * time.Second

// rawConnect dials and logs in with a clean start; props (may be nil) go
// into the CONNECT. A refusing CONNACK is a *refusedError.
func rawConnect(ctx context.Context, d *dialer, addr string, id identity, props *packets.Properties) (net.Conn, *packets.Connack, error) {
	cn, err := d.dial(ctx, addr)
	if err != nil {
		return nil, nil, err
	}
	_ = cn.SetDeadline(time.Now().Add(handshakeTimeout))
	stop := context.AfterFunc(ctx, func() { _ = cn.Close() })
	defer stop()
	cp := packets.NewControlPacket(packets.CONNECT)
	c := cp.Content.(*packets.Connect)
	c.ClientID, c.CleanStart, c.KeepAlive = id.ClientID, true, 0
	c.Properties = props
	if id.Username != "" {
		c.Username, c.UsernameFlag, c.Password, c.PasswordFlag = id.Username, true, []byte(id.Password), true
	}
	var ack *packets.Connack
	if err := roundTrip(cn, cp, packets.CONNACK, func(p *packets.ControlPacket) error {
		ack = p.Content.(*packets.Connack)
		if ack.ReasonCode >= 0x80 {
			return &refusedError{what: "connect", code: ack.ReasonCode}
		}
		return nil
	}); err != nil {
		_ = cn.Close()
		return nil, nil, fmt.Errorf("%s: %w", id.ClientID, err)
	}
	_ = cn.SetDeadline(time.Time{})
	return cn, ack, nil
}

// rawSubscribe subscribes at QoS 1 and waits for the SUBACK; it returns
// how many of the filters the server refused, and the first refusal's code.
func rawSubscribe(cn net.Conn, packetID uint16, filters []string) (refused int, code byte, err error) {
	sp := packets.NewControlPacket(packets.SUBSCRIBE)
	s := sp.Content.(*packets.Subscribe)
	s.PacketID = packetID
	for _, t := range filters {
		s.Subscriptions = append(s.Subscriptions, packets.SubOptions{Topic: t, QoS: 1})
	}
	_ = cn.SetDeadline(time.Now().Add(handshakeTimeout))
	defer cn.SetDeadline(time.Time{})
	err = roundTrip(cn, sp, packets.SUBACK, func(p *packets.ControlPacket) error {
		for _, rc := range p.Content.(*packets.Suback).Reasons {
			if rc >= 0x80 {
				if refused == 0 {
					code = rc
				}
				refused++
			}
		}
		return nil
	})
	return refused, code, err
}

func roundTrip(cn net.Conn, out *packets.ControlPacket, want byte, check func(*packets.ControlPacket) error) error {
	if _, err := out.WriteTo(cn); err != nil {
		return err
	}
	for {
		in, err := packets.ReadPacket(cn)
		if err != nil {
			return err
		}
		if in.Type == want {
			return check(in)
		}
		if in.Type == packets.DISCONNECT {
			return errServerDisconnect
		}
	}
}

var errServerDisconnect = errors.New("server disconnected")

// discard reads and drops everything the server sends, so a hostile client
// is not also a stalled consumer; the channel closes when the connection
// ends.
func discard(cn net.Conn) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := packets.ReadPacket(cn); err != nil {
				return
			}
		}
	}()
	return done
}
