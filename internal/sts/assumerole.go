package sts

import (
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/podiam/podiam/internal/policy"
)

// messageChainingOverHour is AWS's answer to a role session asking for more than
// an hour.
const messageChainingOverHour = "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining."

// AWS refuses (InvalidParameterValue, 400) a request tag with the key of a
// transitive tag the calling session passes on: the inherited value cannot be
// overridden. AWS documents the failure; the message is this STS's wording.
const (
	codeInvalidParameterValue    = "InvalidParameterValue"
	messageTransitiveTagOverride = "One or more session tags conflict with the transitive session tags of the calling session."
)

// actionSetSourceIdentity is the action IAM evaluates when a request sets a
// source identity.
const actionSetSourceIdentity = "sts:SetSourceIdentity"

// notAuthorized is AWS's AccessDenied message for a signed caller.
func notAuthorized(callerARN, action, roleARN string) string {
	return "User: " + callerARN + " is not authorized to perform: " + action + " on resource: " + roleARN
}

// assumeRole verifies the caller's signature, validates the parameters, evaluates
// the role's trust policy for sts:AssumeRole (and sts:TagSession with tags,
// sts:SetSourceIdentity with a source identity), then issues a session. A role
// session assuming a role (role chaining) gets at most an hour, and its transitive
// tags and source identity pass on.
func (s *Server) assumeRole(c *call) *apiError {
	who, err := s.authenticate(c)
	if err != nil {
		return err
	}
	var v validation
	roleARN, sessionName := c.roleParams(&v)
	duration := c.durationParam(&v)
	policyDoc, _ := c.policyParams(&v)
	externalID, hasExternalID := c.param("ExternalId")
	if hasExternalID {
		v.length("externalId", externalID, false, 2, 1224, externalIDRegex, isExternalID)
	}
	sourceIdentity, hasSourceIdentity := c.param("SourceIdentity")
	if hasSourceIdentity {
		v.length("sourceIdentity", sourceIdentity, false, 2, 64, roleSessionRegex, isSessionName)
	}
	tags, tagKeys := c.tagParams(&v)
	transitive := c.transitiveParams(&v)
	if err := v.err(); err != nil {
		return err
	}
	if _, _, ok := parseRoleARN(roleARN); !ok {
		return newAPIError(codeValidation, roleARN+" is invalid", "RoleArn is not an IAM role ARN")
	}
	if err := checkSessionPolicy(policyDoc); err != nil {
		return err
	}

	callerARN := who.arn()
	attrs := []slog.Attr{slog.String("caller", callerARN), slog.String("roleArn", roleARN)}
	role := c.cfg.RoleByARN(roleARN)
	if role == nil {
		return newAPIError(codeAccessDenied, notAuthorized(callerARN, policy.ActionAssumeRole, roleARN),
			"no role "+roleARN+" in the config", attrs...)
	}
	req := policy.AssumeRoleRequest(policy.Principal{Type: "AWS", ID: callerARN}, tags, transitive)
	if req.Context == nil {
		req.Context = map[string][]string{}
	}
	req.Context["sts:RoleSessionName"] = []string{sessionName}
	if hasExternalID {
		req.Context["sts:ExternalId"] = []string{externalID}
	}
	if hasSourceIdentity {
		req.Context["sts:SourceIdentity"] = []string{sourceIdentity}
	}
	var inherited []Tag
	var inheritedKeys []string
	if sess := who.session; sess != nil {
		// IAM gives aws:PrincipalArn of a role session the ARN of its role, path
		// included; the assumed-role ARN has no path, so take the session's own.
		req.Context["aws:PrincipalArn"] = []string{sess.RoleARN}
		for _, t := range sess.Tags {
			req.Context["aws:PrincipalTag/"+t.Key] = []string{t.Value}
			if slices.Contains(sess.TransitiveTagKeys, t.Key) {
				inherited = append(inherited, t)
				inheritedKeys = append(inheritedKeys, t.Key)
			}
		}
		if sess.SourceIdentity != "" {
			req.Context["aws:SourceIdentity"] = []string{sess.SourceIdentity}
			if hasSourceIdentity && sourceIdentity != sess.SourceIdentity {
				return newAPIError(codeAccessDenied, notAuthorized(callerARN, actionSetSourceIdentity, roleARN),
					fmt.Sprintf("the caller's source identity %q cannot change to %q", sess.SourceIdentity, sourceIdentity), attrs...)
			}
			sourceIdentity = sess.SourceIdentity
		}
	}
	// AWS refuses a request tag whose key is an inherited transitive tag's
	// (keys compare case-insensitively, as IAM's tag keys do) rather than let
	// either value win.
	for _, k := range tagKeys {
		for _, ik := range inheritedKeys {
			if strings.EqualFold(k, ik) {
				return newAPIError(codeInvalidParameterValue, messageTransitiveTagOverride,
					fmt.Sprintf("request tag %q has the key of the caller's transitive tag %q", k, ik), attrs...)
			}
		}
	}
	// IAM evaluates each action the request needs against the trust policy.
	actions := []string{policy.ActionAssumeRole}
	if len(tagKeys) > 0 || len(transitive) > 0 {
		actions = append(actions, policy.ActionTagSession)
	}
	if hasSourceIdentity {
		actions = append(actions, actionSetSourceIdentity)
	}
	for _, action := range actions {
		req.Action = action
		if err := evaluate(role, req); err != nil {
			err.Message = notAuthorized(callerARN, action, roleARN)
			err.attrs = append(err.attrs, attrs...)
			return err
		}
	}
	d := time.Duration(duration) * time.Second
	if who.session != nil && d > RoleChainingMaxDuration {
		return newAPIError(codeValidation, messageChainingOverHour,
			fmt.Sprintf("DurationSeconds %d for a role session (role chaining, at most %d)", duration, int64(RoleChainingMaxDuration/time.Second)), attrs...)
	}
	if d > role.MaxSession() {
		return newAPIError(codeValidation, messageOverRoleMax,
			fmt.Sprintf("DurationSeconds %d over the role's maxSessionDuration %d", duration, int64(role.MaxSession()/time.Second)), attrs...)
	}

	sess := &Session{
		AccountID:         role.AccountID,
		RoleARN:           role.ARN,
		RoleID:            role.ID,
		SessionName:       sessionName,
		IssuedAt:          c.now.UTC(),
		Expiration:        c.now.UTC().Add(d),
		SourceIdentity:    sourceIdentity,
		Chained:           who.session != nil,
		Tags:              inherited,
		TransitiveTagKeys: inheritedKeys,
	}
	for _, k := range tagKeys {
		sess.Tags = append(sess.Tags, Tag{Key: k, Value: tags[k]})
	}
	for _, k := range transitive {
		if !slices.Contains(sess.TransitiveTagKeys, k) {
			sess.TransitiveTagKeys = append(sess.TransitiveTagKeys, k)
		}
	}
	creds, ierr := s.sealer.Issue(sess)
	if ierr != nil {
		return internalError("issuing credentials", ierr)
	}
	if s.log.Enabled(c.ctx, slog.LevelDebug) {
		s.log.LogAttrs(c.ctx, slog.LevelDebug, "issued", slog.String("requestId", c.id), slog.String("action", c.action),
			slog.Any("session", sess), slog.String("caller", callerARN))
	}
	packed := -1
	if len(tagKeys) > 0 || policyDoc != "" {
		packed = packedPolicySize(policyDoc, tags)
	}
	c.out = appendAssumeRoleResponse(c.out, &assumeRoleResult{
		SourceIdentity:   sourceIdentity,
		User:             assumedRoleUser{ARN: sess.AssumedRoleARN(), AssumedRoleID: sess.AssumedRoleID()},
		Credentials:      creds,
		PackedPolicySize: packed,
	}, c.id)
	return nil
}

// tagParams reads Tags.member.N.Key/Value, validated as AWS does, into a map and
// the keys in request order.
func (c *call) tagParams(v *validation) (map[string]string, []string) {
	var tags map[string]string
	var keys []string
	for i := 1; ; i++ {
		n := strconv.Itoa(i)
		key, hasKey := c.param("Tags.member." + n + ".Key")
		value, hasValue := c.param("Tags.member." + n + ".Value")
		if !hasKey && !hasValue {
			break
		}
		if v.required("tags."+n+".member.key", hasKey) {
			v.length("tags."+n+".member.key", key, false, 1, 128, tagKeyRegex, isTagText)
		}
		if v.required("tags."+n+".member.value", hasValue) {
			v.length("tags."+n+".member.value", value, false, 0, 256, tagValueRegex, isTagText)
		}
		if tags == nil {
			tags = map[string]string{}
		}
		if _, dup := tags[key]; !dup {
			keys = append(keys, key)
		}
		tags[key] = value
	}
	if len(keys) > maxTags {
		v.errs = append(v.errs, "Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50")
	}
	return tags, keys
}

// transitiveParams reads TransitiveTagKeys.member.N.
func (c *call) transitiveParams(v *validation) []string {
	var keys []string
	for i := 1; ; i++ {
		n := strconv.Itoa(i)
		key, ok := c.param("TransitiveTagKeys.member." + n)
		if !ok {
			break
		}
		v.length("transitiveTagKeys."+n+".member", key, false, 1, 128, tagKeyRegex, isTagText)
		keys = append(keys, key)
	}
	if len(keys) > maxTags {
		v.errs = append(v.errs, "Value at 'transitiveTagKeys' failed to satisfy constraint: Member must have length less than or equal to 50")
	}
	return keys
}

// packedPolicySize approximates AWS's PackedPolicySize, the percentage of the
// packed limit that the session policy and tags use: their plain size against
// the 2,048-character policy limit, at least 1.
func packedPolicySize(policyDoc string, tags map[string]string) int {
	n := len(policyDoc)
	for k, v := range tags {
		n += len(k) + len(v)
	}
	return max(1, (n*100+maxPolicyLength-1)/maxPolicyLength)
}
