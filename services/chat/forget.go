package chat

// ForgetUser drops uid from the cache of known recipients, so a deleted
// account stops receiving direct messages at once rather than when the
// cache next fills up.
func (s *Service) ForgetUser(uid string) {
	s.knownMu.Lock()
	delete(s.known, uid)
	s.knownMu.Unlock()
}
