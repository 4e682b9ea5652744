#!/usr/bin/env bash
# Fetches the Apache Kafka release pinned in tests/kafka/pom.xml (broker,
# tools, client and a logging backend) into target/kafka-jars/<version>,
# and the Kafka Connect plugin of tests/kafka/connect/pom.xml into its
# connect-plugins/file-stream (off the classpath, which is <version>/*),
# once: a complete copy (its .complete marker holds the poms' sha256) is
# reused, so later runs cost nothing. A lock file keeps test binaries that
# start together from fetching at the same time. Prints the directory.
#
# Used by tests/common/kafka.rs (on first use) and by .ci/run (before
# `cargo test`, so the fetch is not charged to one test's deadline).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
pom="$root/tests/kafka/pom.xml"
plugin_pom="$root/tests/kafka/connect/pom.xml"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom" | head -1)"
[ -n "$version" ] || { echo "no <kafka.version> in $pom" >&2; exit 1; }
base="${PORTCULLIS_KAFKA_JARS:-$root/target/kafka-jars}"
dir="$base/$version"
want="$(cat "$pom" "$plugin_pom" | sha256sum | cut -d' ' -f1)"
complete() { [ -f "$dir/.complete" ] && [ "$(cat "$dir/.complete")" = "$want" ]; }

mkdir -p "$base"
if ! complete; then
  exec 9>"$base/.lock"
  flock 9
  if ! complete; then
    command -v mvn >/dev/null || { echo "mvn is not installed" >&2; exit 1; }
    tmp="$base/.tmp-$version-$$"
    rm -rf "$tmp"
    started=$(date +%s)
    # -B -q: no progress bars, only errors, shown (colour codes stripped)
    # when Maven fails.
    log="$base/.mvn-$$.log"
    if ! { mvn -B -q -f "$pom" dependency:copy-dependencies -DoutputDirectory="$tmp" &&
      mvn -B -q -f "$plugin_pom" dependency:copy-dependencies \
        -DoutputDirectory="$tmp/connect-plugins/file-stream"; } >"$log" 2>&1; then
      sed 's/\x1b\[[0-9;]*m//g' "$log" >&2
      rm -rf "$log" "$tmp"
      echo "mvn dependency:copy-dependencies failed for $pom or $plugin_pom" >&2
      exit 1
    fi
    rm -f "$log"
    ls "$tmp"/kafka_2.13-"$version".jar "$tmp"/kafka-tools-"$version".jar >/dev/null
    echo "$want" >"$tmp/.complete"
    rm -rf "$dir"
    mv "$tmp" "$dir"
    echo "fetched Apache Kafka $version ($(ls "$dir"/*.jar | wc -l) jars) in $(( $(date +%s) - started ))s" >&2
  fi
fi
echo "$dir"
