package store

import "time"

// The rules below are the Cursors contract as edits of one ChatState, for
// backends that read an entry, change it and write it back (under a lock or
// a compare-and-set). Each reports whether the state changed, so an
// unchanged entry costs no write; found tells whether the entry existed.

// JoinState puts the chat (back) in the list, keeping its cursors.
func JoinState(st *ChatState, _ bool, at time.Time) (bool, error) {
	before := *st
	st.Left = false
	touchState(st, at)
	return *st != before, nil
}

// LeaveState marks the chat left, keeping its cursors.
func LeaveState(st *ChatState, found bool, at time.Time) (bool, error) {
	if !found {
		return false, ErrNotFound
	}
	before := *st
	st.Left = true
	touchState(st, at)
	return *st != before, nil
}

// AdvanceState max-merges the cursors: they never move backwards and 0
// leaves one as it is.
func AdvanceState(st *ChatState, found bool, delivered, read uint64, at time.Time) (bool, error) {
	if !found {
		return false, ErrNotFound
	}
	changed := false
	if delivered > st.DeliveredSeq {
		st.DeliveredSeq, changed = delivered, true
	}
	if read > st.ReadSeq {
		st.ReadSeq, changed = read, true
	}
	if changed {
		touchState(st, at)
	}
	return changed, nil
}

// touchState moves UpdatedAt to at (kept to the millisecond, as every
// backend stores it) but never backwards: a caller whose clock or request
// lags must not hide a change from "changed since" readers that have
// already seen the later time.
func touchState(st *ChatState, at time.Time) {
	at = at.Truncate(time.Millisecond)
	if st.UpdatedAt.IsZero() || at.After(st.UpdatedAt) {
		st.UpdatedAt = at
	}
}
