package main

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestVersionCommand(t *testing.T) {
	var out bytes.Buffer
	root := newRootCommand()
	root.SetOut(&out)
	root.SetArgs([]string{"version"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "podiam dev") {
		t.Fatalf("version printed %q", out.String())
	}
}

func TestUnknownCommand(t *testing.T) {
	root := newRootCommand()
	root.SetArgs([]string{"nope"})
	root.SetOut(&bytes.Buffer{})
	root.SetErr(&bytes.Buffer{})
	if err := root.Execute(); err == nil {
		t.Fatal("unknown command accepted")
	}
}

// TestEveryCommandHasHelpWithExample walks the command tree: every runnable
// command tells what it does and shows at least one invocation of itself.
func TestEveryCommandHasHelpWithExample(t *testing.T) {
	var walk func(c *cobra.Command)
	count := 0
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if !c.Runnable() || c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			return
		}
		count++
		path := c.CommandPath()
		if c.Short == "" {
			t.Errorf("%s: no Short description", path)
		}
		if !strings.Contains(c.Example, path) {
			t.Errorf("%s: its Example does not show %q being run:\n%s", path, path, c.Example)
		}
	}
	walk(newRootCommand())
	if count < 10 {
		t.Errorf("walked %d runnable commands; want the webhook, version, six oidc and two policy commands", count)
	}
}

// TestExitCode: main exits with the code an error in the chain carries.
func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("plain"), 1},
		{&exitError{code: 3}, 3},
		{&exitError{code: 2, err: errors.New("x")}, 2},
		{fmt.Errorf("wrapped: %w", &exitError{code: 4}), 4},
		{wrapErr(&exitError{code: 2, err: errors.New("x")}), 2},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func wrapErr(err error) error { return errors.Join(errors.New("context"), err) }
