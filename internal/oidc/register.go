package oidc

import (
	"fmt"
	"slices"
	"strings"
)

// DefaultClientID is the audience the webhook's tokens carry by default, and
// so the client ID the provider registers when none is given.
const DefaultClientID = "sts.amazonaws.com"

// RegisterSnippets returns the two ways to register issuer as an IAM OIDC
// provider: a ready-to-run `aws iam create-open-id-connect-provider` command
// (arguments shell-quoted where needed) and a Terraform
// aws_iam_openid_connect_provider resource (strings escaped for HCL). Empty
// clientIDs mean DefaultClientID; repeated values appear once. Empty
// thumbprints leave the thumbprint list out: IAM then keeps the thumbprint
// itself, which is enough for a host whose certificate a CA it trusts issued
// (an S3 bucket, for example). Both end with a newline.
func RegisterSnippets(issuer string, clientIDs, thumbprints []string) (awsCLI, terraform string) {
	clientIDs = dedupe(clientIDs)
	if len(clientIDs) == 0 {
		clientIDs = []string{DefaultClientID}
	}
	thumbprints = dedupe(thumbprints)

	var cli strings.Builder
	cli.WriteString("aws iam create-open-id-connect-provider \\\n")
	fmt.Fprintf(&cli, "  --url %s \\\n", shellQuote(issuer))
	fmt.Fprintf(&cli, "  --client-id-list %s", shellQuoteAll(clientIDs))
	if len(thumbprints) > 0 {
		fmt.Fprintf(&cli, " \\\n  --thumbprint-list %s", shellQuoteAll(thumbprints))
	}
	cli.WriteString("\n")

	// Attributes aligned as `terraform fmt` aligns them.
	attrs := [][2]string{{"url", hclString(issuer)}, {"client_id_list", hclList(clientIDs)}}
	if len(thumbprints) > 0 {
		attrs = append(attrs, [2]string{"thumbprint_list", hclList(thumbprints)})
	}
	width := 0
	for _, a := range attrs {
		width = max(width, len(a[0]))
	}
	var tf strings.Builder
	tf.WriteString("resource \"aws_iam_openid_connect_provider\" \"cluster\" {\n")
	for _, a := range attrs {
		fmt.Fprintf(&tf, "  %-*s = %s\n", width, a[0], a[1])
	}
	tf.WriteString("}\n")
	return cli.String(), tf.String()
}

// dedupe returns values without repeats and empty strings, in their order.
func dedupe(values []string) []string {
	var out []string
	for _, v := range values {
		if v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// shellQuote returns s as one POSIX shell word: as it is when it holds only
// characters no shell treats specially, else in single quotes, where each
// single quote of s ends the quoting, is escaped with a backslash and starts
// it again.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool { return !shellSafe(r) }) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func shellSafe(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./_-", r)
}

func shellQuoteAll(values []string) string {
	quoted := make([]string, len(values))
	for i, v := range values {
		quoted[i] = shellQuote(v)
	}
	return strings.Join(quoted, " ")
}

// hclString returns s as an HCL quoted string: backslash escapes for quotes,
// backslashes and control characters, and the template sequences ${ and %{
// doubled so Terraform does not interpolate them.
func hclString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\u%04x`, c)
		case (c == '$' || c == '%') && i+1 < len(s) && s[i+1] == '{':
			b.WriteByte(c)
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func hclList(values []string) string {
	quoted := make([]string, len(values))
	for i, v := range values {
		quoted[i] = hclString(v)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}
