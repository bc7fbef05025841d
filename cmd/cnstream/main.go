// Command cnstream gets Linux kernel connector events (process events and
// other NETLINK_CONNECTOR users) off a machine, accounting for every event it
// could not deliver.
//
//	cnstream tail [flags]   live connector events on the terminal or as JSON lines
//	cnstream send [flags]   send connector messages (the connector's userspace protocol)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/cnstream/cnstream/schema"
)

const usage = `cnstream: kernel connector events, fast and complete, every loss accounted for.

Usage:
  cnstream run [--config FILE]  run the pipeline (default: process events to ./cnstream-data/)
  cnstream validate FILE  check a configuration without running it
  cnstream tail [flags]   show connector events live (process events by default)
  cnstream send [flags]   send cn_msg messages to the kernel or a multicast group
  cnstream top [flags]    watch a running "cnstream run": rates, loss, sink queues, latency
  cnstream keygen --out FILE          write a key for signing a tamper-evident archive
  cnstream verify DIR --key PUB       check an archive: signatures, files, completeness
  cnstream replay DIR --to CONFIG     send archived events to the sinks of a config
  cnstream archive --config FILE      the fleet archiver: a Kafka topic into an archive per host and boot
  cnstream audit DIR [--key PUB]      the fleet's completeness table: per host and boot archive (or --kafka BROKERS: a topic)
  cnstream help [command] show help

Run "cnstream help <command>" for its flags.
Listening needs root or CAP_NET_ADMIN, in the initial network, user and pid namespaces.
`

// errUsage marks errors caused by the command line (exit status 2).
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	// A closed stdout (cnstream tail | head) must end tail through its normal
	// path, which sends IGNORE: with SIGPIPE caught, writes return EPIPE
	// instead of killing the process.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "tail":
		err = tailCmd(ctx, rest, stdout, stderr)
	case "send":
		err = sendCmd(ctx, rest, stdout, stderr)
	case "run":
		err = runCmd(ctx, rest, stdout, stderr)
	case "top":
		err = topCmd(ctx, rest, stdout, stderr)
	case "validate":
		err = validateCmd(rest, stdout, stderr)
	case "keygen":
		err = keygenCmd(rest, stdout, stderr)
	case "verify":
		err = verifyCmd(rest, stdout, stderr)
	case "replay":
		err = replayCmd(ctx, rest, stdout, stderr)
	case "archive":
		err = archiveCmd(ctx, rest, stdout, stderr)
	case "audit":
		err = auditCmd(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		if len(rest) > 0 {
			return run(ctx, []string{rest[0], "-h"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "cnstream: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "cnstream %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "cnstream %s: %v\n", args[0], err)
		return 1
	}
}

func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: cnstream %s\n\n%s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args into fs: help stays flag.ErrHelp, anything else is
// a usage error, and so is a stray argument.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// stringList defines a repeatable flag whose values may also be
// comma-separated.
func stringList(fs *flag.FlagSet, name, usage string, dst *[]string) {
	fs.Func(name, usage, func(v string) error {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				*dst = append(*dst, s)
			}
		}
		return nil
	})
}

func uidList(fs *flag.FlagSet, name, usage string, dst *[]uint32) {
	fs.Func(name, usage, func(v string) error {
		for _, s := range strings.Split(v, ",") {
			u, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
			if err != nil {
				return fmt.Errorf("%q is not a uid", s)
			}
			*dst = append(*dst, uint32(u))
		}
		return nil
	})
}

func kindList(fs *flag.FlagSet, name, usage string, dst *[]schema.Kind) {
	fs.Func(name, usage, func(v string) error {
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(strings.ToLower(s))
			k, ok := schema.ParseKind(s)
			if !ok || k.IsLoss() {
				return fmt.Errorf("unknown kind %q (known: fork,exec,exit,uid,gid,sid,ptrace,comm,coredump,ack,raw)", s)
			}
			*dst = append(*dst, k)
		}
		return nil
	})
}
