package policy

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestParseShapes: IAM accepts a statement object or a list, a string or a
// list for Action and principal values, and numbers or booleans as
// condition values; Parse keeps the form and the document order.
func TestParseShapes(t *testing.T) {
	p, err := Parse([]byte(`{
		"Version": "2012-10-17", "Id": "trust",
		"Statement": {
			"Sid": "one", "Effect": "Allow",
			"Principal": {"Federated": "arn:aws:iam::111122223333:oidc-provider/o.example.com", "AWS": ["111122223333", "arn:aws:iam::444455556666:root"]},
			"Action": "sts:AssumeRoleWithWebIdentity",
			"Condition": {"StringLike": {"z": "1", "a": ["x", "y"]}, "NumericLessThan": {"n": 3600}, "Bool": {"b": true}}
		}}`))
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != Version2012 || p.ID != "trust" || len(p.Statements) != 1 {
		t.Fatalf("policy = %+v", p)
	}
	s := p.Statements[0]
	if s.Path() != "Statement" || s.Sid != "one" || s.Effect != Allow {
		t.Errorf("statement = %+v", s)
	}
	if !reflect.DeepEqual(s.Action, Values{List: []string{"sts:AssumeRoleWithWebIdentity"}, Single: true}) {
		t.Errorf("Action = %+v", s.Action)
	}
	wantPrincipals := []PrincipalValues{
		{Type: "Federated", Values: Values{List: []string{"arn:aws:iam::111122223333:oidc-provider/o.example.com"}, Single: true}},
		{Type: "AWS", Values: Values{List: []string{"111122223333", "arn:aws:iam::444455556666:root"}}},
	}
	if !reflect.DeepEqual(s.Principal.ByType, wantPrincipals) {
		t.Errorf("Principal = %+v", s.Principal.ByType)
	}
	var got []string
	for _, c := range s.Condition {
		got = append(got, c.Operator+" "+c.Key+"="+strings.Join(c.Values.List, ",")+" @"+c.Path())
	}
	want := []string{
		"StringLike z=1 @Statement.Condition.StringLike.z",
		"StringLike a=x,y @Statement.Condition.StringLike.a",
		"NumericLessThan n=3600 @Statement.Condition.NumericLessThan.n",
		"Bool b=true @Statement.Condition.Bool.b",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("conditions (document order) = %q, want %q", got, want)
	}

	list, err := Parse([]byte(`{"Statement":[{"Effect":"Deny","Principal":"*","NotAction":["sts:TagSession"]},{"Effect":"Allow","Principal":{"Service":"pods.eks.amazonaws.com"},"Action":"sts:*"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if list.Version != "" || len(list.Statements) != 2 || list.Statements[1].Path() != "Statement[1]" || !list.Statements[0].Principal.Wildcard {
		t.Errorf("list policy = %+v", list)
	}
}

// TestParseErrors: every error names the JSON path of what is wrong.
func TestParseErrors(t *testing.T) {
	const ok = `"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole"`
	tests := []struct {
		name, doc, want string
	}{
		{"not JSON", `Version: 2012-10-17`, "not JSON"},
		{"truncated", `{"Statement":[`, "not JSON"},
		{"trailing data", `{"Statement":{` + ok + `}} {}`, "not JSON at line 1, column 76: data after the policy document"},
		{"trailing comma, with position", "{\n  \"Statement\": [\n    {\"Effect\": \"Allow\",}\n  ]\n}", `Statement[0]: not JSON at line 3, column 24: invalid character '}' looking for beginning of object key string`},
		{"comma in a condition", "{\"Statement\":{\"Condition\":{\"StringEquals\":{\"a\":\"b\"},\n\t}}}", `Statement.Condition: not JSON at line 2, column 2: invalid character '}'`},
		{"missing colon", `{"Statement" []}`, `not JSON at line 1, column 14: invalid character '[' after object key`},
		{"bad literal", "{\"Version\": 2012-10-17}", `not JSON at line 1, column 17: invalid character '-' after object key:value pair`},
		{"bad value", `{"Statement": tru}`, `Statement: not JSON at line 1, column 18: invalid character '}' in literal true`},
		{"cut short", "{\"Statement\": {\n", `Statement: not JSON at line 2, column 1: unexpected end of the document`},
		{"not an object", `["Statement"]`, "the document is a list, want an object"},
		{"string document", `"policy"`, "the document is a string"},
		{"unknown top element", `{"Version":"2012-10-17","Statements":[]}`, `Statements: unknown element "Statements"`},
		{"version misspelt", `{"version":"2012-10-17","Statement":{` + ok + `}}`, `did you mean "Version"`},
		{"bad version", `{"Version":"2012-10-18","Statement":{` + ok + `}}`, `Version: "2012-10-18" is not a policy language version`},
		{"version number", `{"Version":2012,"Statement":{` + ok + `}}`, `Version: is a number, want a string`},
		{"no statement", `{"Version":"2012-10-17"}`, "Statement: missing"},
		{"empty statement list", `{"Statement":[]}`, "Statement: empty list"},
		{"statement string", `{"Statement":"Allow"}`, "Statement: is a string"},
		{"statement item not object", `{"Statement":[{` + ok + `},"x"]}`, "Statement[1]: is a string, want an object"},
		{"unknown statement element", `{"Statement":[{` + ok + `,"Conditions":{}}]}`, `Statement[0].Conditions: unknown element "Conditions"`},
		{"element case", `{"Statement":[{` + ok + `,"condition":{}}]}`, `Statement[0].condition: unknown element "condition" (element names are case-sensitive: did you mean "Condition"?)`},
		{"empty Effect", `{"Statement":[{"Effect":"","Principal":"*","Action":"sts:AssumeRole"}]}`, "Statement[0].Effect: empty"},
		{"missing Effect", `{"Statement":[{"Principal":"*","Action":"sts:AssumeRole"}]}`, "Statement[0].Effect: missing"},
		{"Effect case", `{"Statement":[{"Effect":"allow","Principal":"*","Action":"sts:AssumeRole"}]}`, `Statement[0].Effect: "allow", want "Allow" or "Deny"`},
		{"Effect type", `{"Statement":[{"Effect":true,"Principal":"*","Action":"sts:AssumeRole"}]}`, "Statement[0].Effect: is a boolean"},
		{"Action number", `{"Statement":[{"Effect":"Allow","Principal":"*","Action":1}]}`, "Statement[0].Action: is a number, want a string"},
		{"Action list item", `{"Statement":[{"Effect":"Allow","Principal":"*","Action":["sts:AssumeRole",{}]}]}`, "Statement[0].Action[1]: is an object, want a string"},
		{"Action without service", `{"Statement":[{"Effect":"Allow","Principal":"*","Action":"AssumeRoleWithWebIdentity"}]}`, `Statement[0].Action[0]: "AssumeRoleWithWebIdentity" has no service prefix`},
		{"no Action", `{"Statement":[{"Effect":"Allow","Principal":"*"}]}`, "Statement[0].Action: missing"},
		{"Action and NotAction", `{"Statement":[{` + ok + `,"NotAction":"sts:TagSession"}]}`, "Statement[0]: has both Action and NotAction"},
		{"Principal string", `{"Statement":[{"Effect":"Allow","Principal":"arn:aws:iam::111122223333:root","Action":"sts:AssumeRole"}]}`, `Statement[0].Principal: "arn:aws:iam::111122223333:root", want "*" or an object`},
		{"Principal type", `{"Statement":[{"Effect":"Allow","Principal":{"Federate":"x"},"Action":"sts:AssumeRole"}]}`, `Statement[0].Principal.Federate: unknown element "Federate"`},
		{"Principal value", `{"Statement":[{"Effect":"Allow","Principal":{"AWS":[1]},"Action":"sts:AssumeRole"}]}`, "Statement[0].Principal.AWS[0]: is a number"},
		{"Principal empty", `{"Statement":[{"Effect":"Allow","Principal":{},"Action":"sts:AssumeRole"}]}`, "Statement[0].Principal: empty object"},
		{"Principal and NotPrincipal", `{"Statement":[{` + ok + `,"NotPrincipal":{"AWS":"1"}}]}`, "Statement[0]: has both Principal and NotPrincipal"},
		{"duplicate element", `{"Statement":[{` + ok + `,"Effect":"Deny"}]}`, `Statement[0].Effect: duplicate element "Effect"`},
		{"condition operator", `{"Statement":[{` + ok + `},{` + ok + `,"Condition":{"StringEquals":{"a":"b"},"StringEqualsIgnorecase":{"a":"b"}}}]}`, `Statement[1].Condition.StringEqualsIgnorecase: unknown condition operator`},
		{"Sid type", `{"Statement":[{` + ok + `,"Sid":1}]}`, "Statement[0].Sid: is a number"},
		{"Resource type", `{"Statement":[{` + ok + `,"Resource":{}}]}`, "Statement[0].Resource: is an object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse = %v, %v; want error containing %q", p, err, tt.want)
			}
		})
	}
}

// TestValidAccount: the one account id check of the package (Principal
// matching and the trust policy writer).
func TestValidAccount(t *testing.T) {
	for s, want := range map[string]bool{
		"111122223333": true, "000000000000": true,
		"": false, "11112222333": false, "1111222233334": false, "11112222333a": false, " 111122223333": false, "１11122223333": false,
	} {
		if got := validAccount(s); got != want {
			t.Errorf("validAccount(%q) = %v, want %v", s, got, want)
		}
	}
}

// TestParseTestdata parses every policy of testdata/ (eksctl, kOps,
// terraform-aws-modules, AWS documentation).
func TestParseTestdata(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) < 8 {
		t.Fatalf("testdata: %v, %d files", err, len(files))
	}
	for _, f := range files {
		doc, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(doc); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	doc, err := os.ReadFile("testdata/eksctl.json")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(doc); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzParse: no input crashes Parse, and what parses also evaluates
// without a panic.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, file := range files {
		doc, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(doc)
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		p, err := Parse(doc)
		if err != nil {
			if p != nil {
				t.Fatal("Parse returned a policy and an error")
			}
			return
		}
		r := WebIdentityRequest("", "111122223333", "https://oidc.example.com/c1", "system:serviceaccount:ns:app", []string{"sts.amazonaws.com"})
		if d, err := p.Evaluate(r); err == nil {
			_ = d.Explain()
		}
	})
}
