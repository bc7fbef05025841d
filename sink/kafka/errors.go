package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	kafkago "github.com/segmentio/kafka-go"
)

// ErrWriteTimeout: a WriteBatch ran out of Config.WriteTimeout before every
// message was acknowledged. It is retriable; some messages may have been
// written.
var ErrWriteTimeout = errors.New("no acknowledgement within WriteTimeout")

// errWriteTimeout is the cause of WriteBatch's own deadline.
var errWriteTimeout = errors.New("kafka: WriteTimeout")

// permanent reports whether retrying the write that failed with err cannot
// help: a message larger than the broker or kafka-go accept, an invalid
// topic name, failed authentication or authorization, a broker certificate
// that does not verify, and every other Kafka error code but the retriable
// ones (retriableCode). Network errors and timeouts are
// retriable. kafka.WriteErrors is permanent when all of its errors are.
func permanent(err error) bool {
	var werrs kafkago.WriteErrors
	if errors.As(err, &werrs) {
		n := 0
		for _, e := range werrs {
			if e == nil {
				continue
			}
			n++
			if !permanent(e) {
				return false
			}
		}
		return n > 0
	}
	var tooLarge kafkago.MessageTooLargeError
	if errors.As(err, &tooLarge) {
		return true
	}
	var kerr kafkago.Error
	if errors.As(err, &kerr) {
		return !retriableCode(kerr)
	}
	var (
		unknownCA x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		hostname  x509.HostnameError
		verifyErr *tls.CertificateVerificationError
		// TLS spoken to a plain server that answers. A Kafka PLAINTEXT
		// listener does not: it closes the connection (io.EOF, retriable).
		recordHdrE tls.RecordHeaderError
	)
	return errors.As(err, &unknownCA) || errors.As(err, &invalid) || errors.As(err, &hostname) ||
		errors.As(err, &verifyErr) || errors.As(err, &recordHdrE) || expectsTLS(err)
}

// expectsTLS reports whether err is kafka-go's "unexpected EOF: broker
// appears to be expecting TLS": a listener answered a request sent without
// TLS with a TLS alert (kafka-go protocol/response.go), so it will again.
func expectsTLS(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) && strings.Contains(err.Error(), "broker appears to be expecting TLS")
}

// describe shortens kafka.WriteErrors, whose message lists one error per
// message, to its distinct errors; the result wraps err and those errors.
func describe(err error) error {
	var werrs kafkago.WriteErrors
	if !errors.As(err, &werrs) {
		return err
	}
	seen := map[string]bool{}
	wrapped := []error{err}
	var msgs []string
	for _, e := range werrs {
		if e == nil || seen[e.Error()] {
			continue
		}
		seen[e.Error()] = true
		wrapped = append(wrapped, e)
		msgs = append(msgs, e.Error())
	}
	return &writeErrors{
		msg:  fmt.Sprintf("%d of %d messages failed: %s", werrs.Count(), len(werrs), strings.Join(msgs, "; ")),
		errs: wrapped,
	}
}

type writeErrors struct {
	msg  string
	errs []error
}

func (e *writeErrors) Error() string   { return e.msg }
func (e *writeErrors) Unwrap() []error { return e.errs }

// temporary reports whether a produce request that failed with err is
// worth sending again at once: a Kafka error kafka-go calls temporary
// (NOT_LEADER_OR_FOLLOWER, NOT_ENOUGH_REPLICAS, LEADER_NOT_AVAILABLE...),
// or a connection that broke or was refused. Timeouts are not: the
// request's own deadline is WriteBatch's.
func temporary(err error) bool {
	var kerr kafkago.Error
	if errors.As(err, &kerr) {
		return retriableCode(kerr) && kerr != kafkago.Unknown
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() || expectsTLS(err) {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

// retriableCode reports whether a Kafka error code can go away by itself:
// those kafka-go calls temporary, plus BROKER_NOT_AVAILABLE and
// REPLICA_NOT_AVAILABLE (retriable in the Kafka protocol, not in kafka-go's
// list), plus UNKNOWN_SERVER_ERROR (what a broker answers to a fault of its
// own).
func retriableCode(e kafkago.Error) bool {
	return e.Temporary() || e == kafkago.BrokerNotAvailable || e == kafkago.ReplicaNotAvailable || e == kafkago.Unknown
}
