package sts

import (
	"context"
	"errors"
	"log/slog"

	"github.com/podiam/podiam/internal/sigv4"
)

// messageExpiredToken is AWS's message for temporary credentials past their
// expiration.
const messageExpiredToken = "The security token included in the request is expired"

// caller is who signed a request: a user of the config or a session this STS (or
// a replica with the same state key) issued.
type caller struct {
	user    *User
	session *Session
}

// arn is the caller's ARN as AWS names it in messages and in GetCallerIdentity.
func (c *caller) arn() string {
	if c.session != nil {
		return c.session.AssumedRoleARN()
	}
	return c.user.ARN
}

// authenticate verifies the request's SigV4 signature against the config's users
// and the sessions the sealer opens.
func (s *Server) authenticate(c *call) (*caller, *apiError) {
	who := &caller{}
	lookup := func(_ context.Context, accessKeyID, sessionToken string) (string, error) {
		if u := c.cfg.UserByAccessKeyID(accessKeyID); u != nil {
			if sessionToken != "" {
				// Long-term keys never come with a session token.
				e := sigv4.ErrUnknownAccessKey()
				e.Reason = "a session token was sent with the long-term key of " + u.ARN
				return "", e
			}
			who.user = u
			return u.SecretAccessKey, nil
		}
		if sessionToken == "" {
			return "", sigv4.ErrUnknownAccessKey()
		}
		sess, secret, err := s.sealer.LookupAt(accessKeyID, sessionToken, c.now)
		switch {
		case err == nil:
			who.session = sess
			return secret, nil
		case errors.Is(err, ErrSessionExpired):
			return "", &sigv4.Error{Code: codeExpiredToken, Message: messageExpiredToken, Reason: err.Error()}
		default:
			e := sigv4.ErrUnknownAccessKey()
			e.Reason = err.Error()
			return "", e
		}
	}
	if _, err := sigv4.Verify(c.r, c.body, c.now, lookup); err != nil {
		var se *sigv4.Error
		if errors.As(err, &se) {
			// AWS answers 403 for an authentication failure, 400 for a malformed signature.
			e := newAPIError(se.Code, se.Message, "signature: "+se.Reason)
			e.Status = se.HTTPStatus()
			return nil, e
		}
		return nil, internalError("verifying the signature", err)
	}
	if who.user == nil && who.session == nil {
		return nil, internalError("verifying the signature", errors.New("no caller after a verified signature"))
	}
	return who, nil
}

// getCallerIdentity answers who signed the request: for a user its ARN and unique
// id (AIDA…), for a role session the assumed-role ARN and <role id>:<session>.
func (s *Server) getCallerIdentity(c *call) *apiError {
	who, err := s.authenticate(c)
	if err != nil {
		return err
	}
	var id callerIdentity
	if who.session != nil {
		id = callerIdentity{ARN: who.session.AssumedRoleARN(), UserID: who.session.AssumedRoleID(), Account: who.session.AccountID}
	} else {
		id = callerIdentity{ARN: who.user.ARN, UserID: who.user.ID, Account: who.user.AccountID}
	}
	if s.log.Enabled(c.ctx, slog.LevelDebug) {
		s.log.LogAttrs(c.ctx, slog.LevelDebug, "caller identity", slog.String("requestId", c.id), slog.String("arn", id.ARN))
	}
	c.out = appendCallerIdentityResponse(c.out, id, c.id)
	return nil
}
