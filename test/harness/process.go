package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Result is what a podiam command that ran to completion printed, and its
// exit status.
type Result struct {
	Stdout, Stderr string
	ExitCode       int
}

// RunPodiam runs the podiam binary bin with args to completion, its
// environment this process's plus env ("KEY=value"). A non-zero exit status
// is a Result, not an error: the error is for a command that could not run.
func RunPodiam(ctx context.Context, bin string, env []string, args ...string) (Result, error) {
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.SysProcAttr = sysProcAttr()
	err := cmd.Run()
	res := Result{Stdout: out.String(), Stderr: errOut.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return res, nil
	case errors.As(err, &exitErr) && ctx.Err() == nil:
		res.ExitCode = exitErr.ExitCode()
		return res, nil
	default:
		return res, fmt.Errorf("running podiam %q: %w\n%s", args, err, res.Stderr)
	}
}

// Process is a podiam command running in the background, such as
// `podiam oidc serve` or `podiam webhook`. It dies with the process that
// started it (Linux).
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// StartPodiam starts bin with args, its environment this process's plus env,
// writing stdout and stderr to out.
func StartPodiam(bin string, out io.Writer, env []string, args ...string) (*Process, error) {
	return StartPodiamEnv(bin, out, append(os.Environ(), env...), args...)
}

// StartPodiamEnv is StartPodiam with env as the whole environment: nothing
// of this process's, as in a container, where a variable of the machine
// must not make up for one that a manifest lacks.
func StartPodiamEnv(bin string, out io.Writer, env []string, args ...string) (*Process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{}, env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting podiam %q: %w", args, err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// Pid is the process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.done }

// ExitCode is the exit status once Exited is closed (-1 for a signal).
func (p *Process) ExitCode() int { return p.cmd.ProcessState.ExitCode() }

// Stop sends SIGTERM and waits for the process to exit; SIGKILL after 10 s.
func (p *Process) Stop() { p.Signal(syscall.SIGTERM, 10*time.Second) }

// Kill kills the process at once, as a crash would.
func (p *Process) Kill() { p.Signal(syscall.SIGKILL, 10*time.Second) }

// Signal sends sig and waits up to wait for the process to exit, then kills it.
func (p *Process) Signal(sig syscall.Signal, wait time.Duration) {
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(wait):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}
