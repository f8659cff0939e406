package metrics

import "github.com/prometheus/client_golang/prometheus"

// DeviceMessages counts device-to-device messages (services/devicemsg):
// sends by result and acknowledged (deleted) messages.
type DeviceMessages struct {
	sends *prometheus.CounterVec
	acked prometheus.Counter
}

// NewDeviceMessages registers the device message metrics on reg.
func NewDeviceMessages(reg prometheus.Registerer) *DeviceMessages {
	d := &DeviceMessages{
		sends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mqchat", Subsystem: "e2e", Name: "device_messages_total",
			Help: "Device message sends, by result: stored, duplicate (a retried cmid) or refused (invalid, over a limit, or dropped because the recipient blocks the sender).",
		}, []string{"result"}),
		acked: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "mqchat", Subsystem: "e2e", Name: "device_messages_acked_total",
			Help: "Device messages deleted because their device acknowledged them (MQTT PUBACK or REST ack).",
		}),
	}
	for _, r := range []string{"stored", "duplicate", "refused"} {
		d.sends.WithLabelValues(r)
	}
	reg.MustRegister(d.sends, d.acked)
	return d
}

func (d *DeviceMessages) ObserveDeviceMessage(result string) { d.sends.WithLabelValues(result).Inc() }

func (d *DeviceMessages) ObserveDeviceMessagesAcked(n int) { d.acked.Add(float64(n)) }
