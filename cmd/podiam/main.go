// Command podiam gives pods on any Kubernetes cluster their own AWS IAM role.
// This package only wires flags to the packages under internal/.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		// An error without a message only sets the exit code (policy check's
		// denial, already explained on stdout).
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(os.Stderr, "podiam:", msg)
		}
		os.Exit(exitCode(err))
	}
}

// exitError is a command's error that sets main's exit code. An empty
// message prints nothing (policy check's denial, already explained on
// stdout).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// ExitCode is the process exit code main uses.
func (e *exitError) ExitCode() int { return e.code }

// exitCode is the process exit code for the error a command returned: 0 for
// none, the code an error in its chain carries, else 1.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ec interface{ ExitCode() int }
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return 1
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "podiam",
		Short:         "AWS IAM roles for Kubernetes pods, on any cluster",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newWebhookCommand(), newAuthCommand(), newAgentCommand(), newOIDCCommand(), newPolicyCommand(), newSTSCommand(), newVersionCommand())
	return root
}
