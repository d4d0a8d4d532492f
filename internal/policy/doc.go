// Package policy parses and evaluates IAM policies the way IAM evaluates a
// role's trust policy, explains a denial (which statement, which condition,
// the value expected and the value the request carries), and writes the trust
// policies IRSA and Pod Identity need. It does no I/O.
//
// Parse reads any policy document of the IAM grammar (Version, Id, Statement
// as an object or a list; Sid, Effect, Principal, NotPrincipal, Action,
// NotAction, Resource, NotResource, Condition) and reports errors with the
// JSON path of the element at fault, e.g. Statement[1].Condition.StringEquals.
// Element, operator and Effect names are case-sensitive, as in IAM; a
// near miss in case is named in the error. A document that is not JSON is
// reported with its line and column and the path being read, e.g.
// Statement[0].Condition: not JSON at line 7, column 3: invalid character '}'….
//
// Evaluate follows IAM's evaluation logic for trust policies:
//
//   - An explicit Deny wins; otherwise an Allow whose principal, action and
//     conditions all match allows; otherwise the request is implicitly denied.
//   - A policy IAM would refuse as a trust policy is an error, not a
//     decision: NotPrincipal (IAM does not allow it in trust policies), a
//     statement without Principal, Resource or NotResource.
//   - Principal: "*" and {"AWS": "*"} match every caller. An account id or
//     arn:aws:iam::<account>:root matches every AWS principal of the account.
//     An ARN names its partition: arn:aws:iam::<account>:root does not match
//     a caller in aws-cn (a bare account id carries no partition).
//     A role ARN matches the role and its sessions
//     (arn:aws:sts::<account>:assumed-role/<name>/<session>). Other values,
//     and Federated and Service values, must be equal.
//   - Action and NotAction: * and ? wildcards, case-insensitive.
//   - Conditions: operators ANDed, keys of an operator ANDed, values of a key
//     ORed (NORed for the negated operators). Keys are case-insensitive,
//     values case-sensitive except for the IgnoreCase operators. Every
//     operator family of IAM is implemented: String*, Numeric*, Date*, Bool,
//     BinaryEquals, IpAddress/NotIpAddress, Arn* (ArnEquals and ArnLike
//     alike: the six components of the ARN matched one by one with wildcards)
//     and Null, with the IfExists suffix (not on Null) and the ForAnyValue:
//     and ForAllValues: qualifiers.
//   - A key absent from the request: positive operators are false, negated
//     ones (StringNotEquals, ArnNotLike, NotIpAddress…) true, …IfExists true,
//     ForAllValues true, ForAnyValue false; Null "true" holds.
//   - A multi-valued key without a qualifier matches a positive operator when
//     any of its values does, a negated one when none does.
//   - Policy variables (${aws:username}, ${key, 'default'}, ${*}, ${?}, ${$})
//     are substituted in String and Arn values with Version 2012-10-17
//     only; without it they are literal text, as in IAM.
//   - An unknown operator or qualifier, or a value its operator cannot read
//     (a number, date, address, boolean or ARN), is a Parse error naming it:
//     never a condition that silently matches.
//   - Condition keys, and the keys policy variables name, are checked for
//     their shape at Parse: an empty key or an empty part around ':', a tag
//     or context key prefix with no name (aws:RequestTag/, aws:ResourceTag/,
//     aws:PrincipalTag/, iam:ResourceTag/, sts:RequestContext/), and a web
//     identity provider written with https:// or a trailing slash (the error
//     says the key to write) are errors: such a key is always absent.
//   - A well-formed key parses whether or not podiam knows it. podiam knows
//     IAM's global condition keys, the keys of AWS STS (sts:RequestContext/
//     <key> included), the SAML federation keys, and the claims IAM maps for
//     web identity providers: amr, aud, azp, email, oaud and sub for every
//     OIDC provider (graph.facebook.com: app_id, id; www.amazon.com: app_id,
//     user_id), plus the provider-specific claims for GitHub Actions
//     (token.actions.githubusercontent.com[/<path>], token.actions.<domain>.ghe.com),
//     gitlab.com, Buildkite, CircleCI (oidc.circleci.com/org/<id>:
//     oidc.circleci.com/project-id), Google (accounts.google.com:
//     google/organization_number) and OCI (rpst_id).
//   - Evaluate decides a missing key by IAM's rules only for a key podiam
//     knows. In a statement whose principal and action match the request, a
//     key podiam does not know (a misspelt aws:PrincipalArnn or claim, a bare
//     "namespace", another service's s3:prefix) that the request does not
//     carry is an error naming the key and its path, and so is
//     iam:ResourceTag/<key> (the role's own tags, which podiam's requests do
//     not carry): its absence would make a negated operator true, a silent
//     allow or a Deny that never applies. When the request carries such a key
//     it is compared as given and Explain warns that it is not a key podiam
//     knows.
//   - A policy variable without a default whose key the request does not
//     carry (or carries with several values) is an Evaluate error naming it,
//     in a statement that applies to the request. IAM documents that such a
//     condition does not match; a value that matches nothing makes a negated
//     operator (StringNotEquals…) hold instead, which would turn IAM's "no
//     match" into a silent allow. Rather than treat operators differently,
//     podiam refuses for every operator: an error is the safe choice. Give
//     the variable a default, ${key, 'value'}, to decide the missing case.
//
// Decision.Explain lists, for an implicit deny, every Allow statement with
// the first part that did not match and a concrete fix; for an explicit
// deny, each condition of the Deny statement with the values in the
// statement and in the request, and how to narrow it. For every decision it
// warns about the usual IRSA mistakes (https:// or a trailing slash in a
// provider ARN, a key for another provider, sts.amazonaws.com against kOps's
// amazonaws.com audience, policy variables without Version 2012-10-17, a
// key podiam does not know that the request carries).
//
// WebIdentityRequest and AssumeRoleRequest build the requests IAM evaluates
// for sts:AssumeRoleWithWebIdentity (keys <issuer host+path>:sub, :aud and
// aws:FederatedProvider) and sts:AssumeRole (aws:RequestTag/<key>,
// aws:TagKeys, sts:TransitiveTagKeys, aws:PrincipalArn,
// aws:PrincipalAccount, aws:PrincipalServiceName).
package policy
