/* After a TLS 1.3 handshake, usher's own record layer instead of OpenSSL's.
 *
 * Most IMAP sessions sit in IDLE for hours. An OpenSSL 3 connection holds
 * about 14 KiB for as long as it lives (the SSL object alone is 7.6 KiB,
 * then cipher contexts, the session, a copy of the certificate settings,
 * the ephemeral keys, locks), four times what the rest of a session costs.
 * What the connection needs after the handshake is far less: per direction
 * a traffic secret, a key, an IV and a sequence number (about 220 bytes in
 * all). So once OpenSSL has finished the handshake (and sent its ticket),
 * we take the traffic secrets it reports through the key log callback,
 * count the records it has already protected under them, free the SSL,
 * and go on with a libevent filter bufferevent that seals and opens TLS
 * 1.3 records (RFC 8446 section 5) with the same AEAD, handling KeyUpdate
 * and alerts.
 *
 * Only TLS 1.3 with AES-GCM or ChaCha20-Poly1305 is taken over, and only
 * when OpenSSL holds nothing unprocessed; anything else stays with
 * OpenSSL, which is always correct, just larger.
 *
 * tlswatch.h watches the handshake and hands over; this is the record
 * layer itself. */
#ifndef USHER_PROXY_TLSREC_H
#define USHER_PROXY_TLSREC_H

#include <stddef.h>
#include <stdint.h>

#include <event2/bufferevent.h>

/* The record layer from given traffic secrets, on fd (non-blocking),
 * with rseq/wseq records already protected under them. suite_id: the
 * TLS 1.3 cipher suite's two-byte id (0x1301, 0x1302, 0x1303). The
 * take-over builds its filter with it; tests build one without a
 * handshake. NULL on a bad suite or secret length, or no memory. */
struct bufferevent *tlsrec_from_secrets(struct event_base *base, int fd, int suite_id,
                                        const uint8_t *client_secret,
                                        const uint8_t *server_secret, size_t secret_len,
                                        uint64_t rseq, uint64_t wseq);

/* The first bytes on a filter just made: what OpenSSL wrote last and is
 * still to be sent (its session ticket), then plaintext to send right
 * behind it (the greeting), in one write; either may be empty. A failure
 * is reported on bev's event callback once it is set. -1 if bev is not
 * ours. */
int tlsrec_send_first(struct bufferevent *bev, const void *last_flight, size_t flen,
                      const void *first, size_t len);

/* Ends our writing half cleanly: if bev is one of our filters, what its
 * output holds is sealed and queued, then a close_notify alert behind it,
 * so that it leaves after all queued data; nothing is sealed after it.
 * 0, or -1 if bev is not ours (an OpenSSL filter, a plain bufferevent). */
int tlsrec_close_notify(struct bufferevent *bev);

#endif
