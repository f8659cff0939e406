package app

import (
	"github.com/mqchat/mqchat/cluster"
	"github.com/mqchat/mqchat/services/retention"
	"github.com/mqchat/mqchat/store"
	"github.com/mqchat/mqchat/store/compose"
)

// chatLister finds the half of st that holds messages and returns it when
// it can list chats (Pebble, PostgreSQL); nil otherwise (Cassandra), and
// retention then visits only chats with a setting of their own.
func chatLister(st store.Store) store.ChatLister {
	var msgs any = st
	if c, ok := st.(*compose.Store); ok {
		msgs = c.MessageLog
	}
	l, _ := msgs.(store.ChatLister)
	return l
}

// retentionOwner makes only a chat's owner purge it, and only while the
// node holds its membership lease: purging is a write of the chat like any
// other.
type retentionOwner struct{ n *cluster.Node }

func (o retentionOwner) Owns(chat string) bool {
	if _, local := o.n.Owner(chat); !local {
		return false
	}
	return o.n.Check() == nil
}

func retentionOwnerOf(n *cluster.Node) retention.Owner {
	if n == nil {
		return nil
	}
	return retentionOwner{n}
}
