// Package redact replaces secrets in command lines with "[redacted]" before
// an event leaves the enrichment stage, so that no sink, spool or archive
// (and no archive hash) ever holds them.
//
// # What it does
//
// A Redactor holds built-in rules (Config.NoDefaults leaves them out) and
// user rules (Config.Rules). Redact rewrites the elements of an argv in
// place and returns how many elements it changed; the enrichment stage
// (transform/enrich's Table, Config.Redact) redacts a command line once,
// when it is read from /proc, and every event of that process then carries
// the redacted argv and the count in schema.Process.Redacted.
//
// The built-in rules, with what they do to an example:
//
//	flag=value       an option or assignment named as a secret, anywhere in
//	                 an element: --password=X, --passwd=X, --pass=X,
//	                 --token=X, --secret=X, --api-key=X, --apikey=X (one or
//	                 two dashes), PASSWORD=X, TOKEN=X, SECRET=X, API_KEY=X,
//	                 and names ending in _PASSWORD, _PASSWD, _TOKEN, _SECRET,
//	                 _API_KEY, _APIKEY, _ACCESS_KEY (AWS_SECRET_ACCESS_KEY=X);
//	                 names are case-insensitive and '-' counts as '_'
//	                 (--db-password=X, db_token=X):
//	                   --password=hunter2     -> --password=[redacted]
//	                   env DB_PASSWORD=x cmd  -> env DB_PASSWORD=[redacted] cmd
//	                   sh -c 'TOKEN=x curl …' -> sh -c 'TOKEN=[redacted] curl …'
//	flag value       the element after --password, --passwd, --pass,
//	                 --token, --secret, --api-key, --apikey (one or two
//	                 dashes, or the suffixed names above, not --no-…),
//	                 unless it starts with '-':
//	                   --token abc            -> --token [redacted]
//	-pSECRET         for mysql, mysqldump, mysqladmin, mysqlimport,
//	                 mysqlcheck, mysqlshow, mysqlpump, mariadb,
//	                 mariadb-dump, mariadb-admin only (argv[0]'s or the
//	                 exe's base name), the value attached to -p (their
//	                 "-p X" prompts for a password and X is a database):
//	                   mysql -uroot -psecret  -> mysql -uroot -p[redacted]
//	URL password     scheme://user:password@host anywhere in an element:
//	                   https://bob:pw@h/x     -> https://bob:[redacted]@h/x
//	Authorization    an "Authorization:" (or Proxy-Authorization:) header's
//	                 credentials, after its scheme word:
//	                   Authorization: Bearer abc -> Authorization: Bearer [redacted]
//
// Where a value ends: a value that starts its element (--password=a b,
// env 'PASSWORD=a b') runs to the element's end. One inside a longer
// string (a shell script of sh -c, a URL's query) runs to the next blank,
// ';', '&', '|', ',', ')' or backquote, or to its closing quote when it
// starts with one (PASSWORD="a b"); so does a value after the "-c" of a
// shell. A secret holding one of these characters in such a string is
// redacted only up to it. A URL's password ends at the last '@' before the
// host; one holding '/', '?' or '#' unescaped (which URLs do not allow) is
// redacted unless what precedes the '/' is a port number.
//
// User rules are regular expressions (Go's RE2 syntax) matched against
// each element (On "argv", the default) or against the executable (On
// "exe"). An argv rule with Replace "value" (the default) replaces the
// secret and keeps the rest of the element: the text of the regex's first
// capture group when it has one (--key=(\S+) keeps "--key="), else the
// whole match; Replace "whole" replaces the whole element. An exe rule
// matching the exe path, its base name or argv[0]'s base name redacts every
// argument after argv[0], whole.
//
// Redaction is idempotent: a secret already "[redacted]" is left as it is
// and not counted again (for user rules that is so when their secret span
// matches "[redacted]" as a whole, as a rule for a value does).
//
// # Cost
//
// An element holding none of '=', ':', '@', and not starting with '-', is
// passed over by the built-in rules after one scan for those bytes; the
// others are checked by hand-written matchers, without regular expressions
// and without allocating unless something is redacted. User rules run
// their regex on every element. See docs/BENCHMARKS.md (BenchmarkRedact).
//
// # Concurrency
//
// A Redactor is immutable after New and may be used from any number of
// goroutines.
package redact
