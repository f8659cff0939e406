package auth

import (
	"context"

	"golang.org/x/crypto/bcrypt"
)

// CheckPassword confirms uid's password before an irreversible step
// (account deletion). It shares the login throttle of uid's username, so a
// stolen access token cannot be used to guess the password faster than a
// login could; ErrInvalidCredentials when it does not match.
func (s *Service) CheckPassword(ctx context.Context, uid, password string) error {
	u, err := s.User(ctx, uid)
	if err != nil {
		return err
	}
	if err := s.opts.Throttle.begin(u.Username); err != nil {
		return err
	}
	if len(password) > maxPassword || bcrypt.CompareHashAndPassword(u.PasswordHash, []byte(password)) != nil {
		return ErrInvalidCredentials
	}
	s.opts.Throttle.succeed(u.Username)
	return nil
}
