/* Micro-benchmark of proxy/imap_track against the relay's own work: the
 * same bytes, in the same 16 KiB chunks, fed to a tracker of a selected
 * session, or only memcpy'd (what moving a chunk costs at the least).
 *   usher-track-bench [GiB per stream, default 1]
 * Two streams from the backend: (a) FETCH BODY[] responses with 64 KiB
 * literals, (b) small lines (FETCH FLAGS MODSEQ, EXISTS), ~45 bytes each.
 * Prints ns/byte and GiB/s for each, and the tracker's cost over memcpy. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy/imap_track.h"

#define CHUNK 16384
#define STREAM_BYTES (64u << 20)   /* built once, replayed until the total is reached */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static size_t fetch_heavy(char *buf, size_t cap) {
  size_t n = 0;
  for (uint32_t seq = 1; n + 70000 < cap; seq++) {
    n += (size_t)sprintf(buf + n, "* %u FETCH (UID %u BODY[] {65536}\r\n", seq, seq + 100);
    for (size_t i = 0; i < 65536; i++) buf[n + i] = (i % 78 == 77) ? '\n' : (char)('a' + i % 26);
    n += 65536;
    n += (size_t)sprintf(buf + n, " MODSEQ (%u))\r\n", seq + 1000);
  }
  return n;
}

static size_t small_lines(char *buf, size_t cap) {
  size_t n = 0;
  for (uint32_t seq = 1; n + 100 < cap; seq++) {
    if (seq % 4 == 0) n += (size_t)sprintf(buf + n, "* %u EXISTS\r\n", 5000 + seq);
    else n += (size_t)sprintf(buf + n, "* %u FETCH (UID %u FLAGS (\\Seen) MODSEQ (%u))\r\n",
                              seq % 5000 + 1, seq, seq + 1000);
  }
  return n;
}

static struct imap_track *selected_session(void) {
  static const char cmd[] = "a1 SELECT INBOX\r\n";
  static const char ans[] = "* 5000 EXISTS\r\n* OK [UIDVALIDITY 1] x\r\n* OK [UIDNEXT 5001] x\r\n"
                            "a1 OK [READ-WRITE] Select completed.\r\n";
  struct imap_track *t = imap_track_new();
  imap_track_client(t, cmd, sizeof cmd - 1);
  imap_track_server(t, ans, sizeof ans - 1);
  return t;
}

/* Seconds to push total bytes of stream through, tracked or copied. */
static double pass(const char *stream, size_t len, uint64_t total, int track) {
  static char dst[CHUNK];
  struct imap_track *t = selected_session();
  volatile char sink = 0;
  double t0 = now_s();
  for (uint64_t done = 0; done < total;) {
    for (size_t at = 0; at < len && done < total; at += CHUNK) {
      size_t k = len - at < CHUNK ? len - at : CHUNK;
      if (track) imap_track_server(t, stream + at, k);
      else memcpy(dst, stream + at, k);
      sink ^= dst[k - 1];
      done += k;
    }
  }
  double s = now_s() - t0;
  if (track && imap_track_state(t) != IMAP_TRACK_SELECTED) {   /* it must still follow */
    fprintf(stderr, "tracker lost the stream: %s\n", imap_track_reason(t));
    exit(1);
  }
  imap_track_free(t);
  (void)sink;
  return s;
}

static void report(const char *name, const char *stream, size_t len, uint64_t total) {
  double copy = pass(stream, len, total, 0), track = pass(stream, len, total, 1);
  for (int i = 0; i < 2; i++) {   /* best of three each */
    double c = pass(stream, len, total, 0), t = pass(stream, len, total, 1);
    if (c < copy) copy = c;
    if (t < track) track = t;
  }
  double gib = (double)total / (1u << 30);
  printf("%-12s memcpy %.4f ns/B %6.2f GiB/s | imap_track %.4f ns/B %6.2f GiB/s | track/memcpy %.2f\n",
         name, copy * 1e9 / total, gib / copy, track * 1e9 / total, gib / track, track / copy);
}

int main(int argc, char **argv) {
  uint64_t total = (uint64_t)((argc > 1 ? atof(argv[1]) : 1.0) * (1u << 30));
  char *buf = malloc(STREAM_BYTES);
  if (!buf) return 1;
  size_t n = fetch_heavy(buf, STREAM_BYTES);
  report("fetch_64k", buf, n, total);
  n = small_lines(buf, STREAM_BYTES);
  report("small_lines", buf, n, total);
  free(buf);
  return 0;
}
