"""TLS on the client side: certificates chosen by SNI, session tickets whose
keys rotate and are shared by proxies given the same ticket key file (a
failover twin resumes the sessions of the node that died), and the
protocol floor."""
import imaplib
import os
import select
import socket
import ssl
import subprocess
import time
import unittest

import harness
from harness import USERS


def make_cert(directory, name, sans):
    cert, key = os.path.join(directory, name + '.pem'), os.path.join(directory, name + '.key')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                    'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert,
                    '-days', '30', '-subj', '/CN=' + name,
                    '-addext', 'subjectAltName=' + ','.join('DNS:' + s for s in sans)],
                   check=True, capture_output=True)
    return cert, key


def client_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


CLIENT_CTX = client_ctx()   # sessions resume only within the context they came from


def handshake(port, server_name='localhost', session=None, ctx=None):
    """One TLS connection; returns (certificate DER, session, reused)."""
    raw = socket.create_connection(('127.0.0.1', port), timeout=10)
    s = (ctx or CLIENT_CTX).wrap_socket(raw, server_hostname=server_name, session=session)
    try:
        assert s.recv(1024).startswith(b'* OK')   # the TLS 1.3 ticket comes with it
        return s.getpeercert(binary_form=True), s.session, s.session_reused
    finally:
        s.close()


def finished_with_command(port, ctx, session=None):
    """A TLS client that sends its first command in the same packet as its
    Finished, before it has seen the greeting (memory BIOs make the packet
    exact). Returns (lines up to the tagged answer, SSLObject)."""
    sock = socket.create_connection(('127.0.0.1', port), timeout=10)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname='localhost', session=session)
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            data = out.read()
            if data:
                sock.sendall(data)
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError('closed during the handshake')
            inc.write(chunk)
    obj.write(b'a1 CAPABILITY\r\n')
    sock.sendall(out.read())   # the Finished (if still to go) and the command, together
    buf = b''
    while b'\r\na1 ' not in buf or not buf.endswith(b'\r\n'):
        try:
            buf += obj.read(65536)
            continue
        except ssl.SSLWantReadError:
            pass
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError('closed; have %r' % buf)
        inc.write(chunk)
    sock.close()
    return buf.split(b'\r\n'), obj


class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = harness.Env()
        cls.b1 = cls.env.dovecot('backend1')
        d = os.path.join(cls.env.dir, 'certs')
        os.makedirs(d)
        mail = make_cert(d, 'mail-cert', ['mail.example.org', 'imap.example.org'])
        wild = make_cert(d, 'wild-cert', ['*.example.net'])
        pair_key = cls.env.secret_file('pair-ticket-key', 'the pair shares this ticket secret')
        other_key = cls.env.secret_file('other-ticket-key', 'a different proxy, another secret')
        certs = {'certificate mail': {'cert': mail[0], 'key': mail[1]},
                 'certificate wild': {'cert': wild[0], 'key': wild[1]}}
        cls.a = cls.env.usher(workers=2, extra=dict(certs, tls={'ticket_key_file': pair_key},
                                                     usher={'log_level': 'debug'}))
        cls.b = cls.env.usher(workers=1, extra={'tls': {'ticket_key_file': pair_key}})
        cls.c = cls.env.usher(workers=1, extra={'tls': {'ticket_key_file': other_key,
                                                         'ciphersuites': 'TLS_CHACHA20_POLY1305_SHA256'}})

    @classmethod
    def tearDownClass(cls):
        rcs = [u.stop() for u in (cls.a, cls.b, cls.c)]
        cls.env.close()   # raises with the log lines of any crash
        assert rcs == [0, 0, 0], rcs

    def test_sni_picks_the_certificate(self):
        port = self.a.tls_port
        self.assertIn(b'mail-cert', handshake(port, 'mail.example.org')[0])
        self.assertIn(b'mail-cert', handshake(port, 'IMAP.example.org')[0])
        self.assertIn(b'wild-cert', handshake(port, 'box.example.net')[0])
        default = handshake(port, 'localhost')[0]
        self.assertNotIn(b'mail-cert', default)
        self.assertNotIn(b'wild-cert', default)
        self.assertNotIn(b'wild-cert', handshake(port, 'a.b.example.net')[0])   # one label only
        self.assertNotIn(b'mail-cert', handshake(port, None)[0])                  # no SNI

    def test_sni_certificate_serves_a_login(self):
        ctx = ssl.create_default_context(cafile=os.path.join(self.env.dir, 'certs',
                                                             'mail-cert.pem'))
        raw = socket.create_connection(('127.0.0.1', self.a.tls_port), timeout=10)
        s = ctx.wrap_socket(raw, server_hostname='mail.example.org')   # verified
        self.assertTrue(s.recv(1024).startswith(b'* OK'))
        s.sendall(b'a LOGIN alice ' + USERS['alice'].encode() + b'\r\n')
        buf = b''
        while b'a OK' not in buf:
            chunk = s.recv(4096)
            self.assertTrue(chunk, buf)
            buf += chunk
        s.close()

    def test_tickets_resume_on_the_twin_only(self):
        _, session, reused = handshake(self.a.tls_port)
        self.assertFalse(reused)
        self.assertTrue(session.has_ticket)
        _, _, reused = handshake(self.b.tls_port, session=session)
        self.assertTrue(reused, 'the twin with the same ticket key file must resume')
        _, _, reused = handshake(self.c.tls_port, session=session)
        self.assertFalse(reused, 'another ticket secret must not resume')

    def test_every_reconnection_resumes_with_the_newest_ticket(self):
        """A client that reconnects again and again, each time with the
        ticket of its last connection (as OpenSSL's clients do: a TLS 1.3
        ticket is used once), resumes every time: a resumed TLS 1.3
        handshake hands out a fresh ticket. TLS 1.2 tickets are reused."""
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            ctx = client_ctx()
            ctx.maximum_version = version
            _, session, reused = handshake(self.a.tls_port, ctx=ctx)
            self.assertFalse(reused)
            for i in range(4):
                _, newest, reused = handshake(self.a.tls_port, session=session, ctx=ctx)
                self.assertTrue(reused, '%s: reconnection %d was a full handshake' % (version, i + 1))
                if version == ssl.TLSVersion.TLSv1_3:
                    self.assertNotEqual(newest.id, session.id, 'no fresh ticket on resumption')
                session = newest

    # ---- sessions on usher's own record layer after the handshake ----------

    def released(self, before):
        """How many sessions moved to usher's record layer since `before`."""
        return self.a.log().count('event=tls_release') - before

    def test_big_append_and_fetch_byte_exact_after_release(self):
        before = self.released(0)
        text = harness.random_bytes(3 * 1024 * 1024, seed=11).hex().encode()   # 6 MiB
        body = (b'From: tls@example.org\r\nSubject: big over tls\r\n\r\n' +
                b'\r\n'.join(text[i:i + 998] for i in range(0, len(text), 998)) + b'\r\n')
        m = imaplib.IMAP4_SSL('127.0.0.1', self.a.tls_port, ssl_context=self.env.tls_context())
        m.login('user30', USERS['user30'])
        m.create('TlsBig')
        self.assertEqual(m.append('TlsBig', None, None, body)[0], 'OK')
        n = m.select('TlsBig')[1][0].decode()
        typ, data = m.fetch(n, '(BODY.PEEK[])')
        self.assertEqual(typ, 'OK')
        self.assertEqual(harness.sha256(data[0][1]), harness.sha256(body))
        m.logout()
        self.assertGreaterEqual(self.released(before), 1)

    def workers_rss_kib(self):
        total = 0
        for t in os.listdir('/proc/%d/task' % self.a.proc.pid):
            for pid in open('/proc/%d/task/%s/children' % (self.a.proc.pid, t)).read().split():
                if b'worker' in open('/proc/%s/cmdline' % pid, 'rb').read():
                    for line in open('/proc/%s/status' % pid):
                        if line.startswith('VmRSS:'):
                            total += int(line.split()[1])
        return total

    def test_a_client_that_does_not_read_costs_little_memory(self):
        """A FETCH of 16 MiB to a TLS client that does not read: the worker
        stops reading the backend instead of holding the message (it held
        all of it on our record layer once), and the message then arrives
        byte-exact. On our record layer (TLS 1.3) and OpenSSL's (1.2)."""
        line = b'y' * 1022 + b'\r\n'
        body = b'Subject: slow reader\r\n\r\n' + line * (16 * 1024)
        m = imaplib.IMAP4('127.0.0.1', self.a.port)
        m.login('user34', USERS['user34'])
        m.create('Slow')
        self.assertEqual(m.append('Slow', None, None, body)[0], 'OK')
        m.logout()
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            ctx = client_ctx()
            ctx.maximum_version = version
            s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', self.a.tls_port), timeout=20),
                                server_hostname='localhost')
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            buf = b''
            for cmd, tag in ((None, b'* OK'), (b'a LOGIN user34 ' + USERS['user34'].encode(), b'a OK'),
                             (b'b SELECT Slow', b'b OK')):
                if cmd:
                    s.sendall(cmd + b'\r\n')
                while tag not in buf:
                    buf += s.recv(65536)
            before = self.workers_rss_kib()
            s.sendall(b'c FETCH 1 BODY[]\r\n')
            time.sleep(2)
            grown = self.workers_rss_kib() - before
            if not harness.sanitized_build():   # ASan's quarantine keeps freed memory
                self.assertLess(grown, 4096, '%s: the workers grew by %d KiB' % (version, grown))
            got = bytearray()
            while not got.endswith(b'c OK Fetch completed.\r\n') and b'c OK' not in got[-200:]:
                chunk = s.recv(1 << 20)
                self.assertTrue(chunk, 'closed before the FETCH was answered')
                got += chunk
            start = got.index(b'}\r\n') + 3
            self.assertEqual(harness.sha256(bytes(got[start:start + len(body)])), harness.sha256(body))
            s.close()

    def test_every_tls13_session_is_released_whatever_came_before(self):
        """The traffic secrets are caught at the moment OpenSSL derives them
        (the key log is armed only then): every TLS 1.3 session moves to
        usher's record layer, full or resumed, after a TLS 1.2 session,
        after a client that left in the middle of its handshake, and with
        the Finished and a command in one packet."""
        def abandon():
            sock = socket.create_connection(('127.0.0.1', self.a.tls_port), timeout=10)
            inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
            obj = client_ctx().wrap_bio(inc, out, server_hostname='localhost')
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                sock.sendall(out.read())
            self.assertTrue(sock.recv(65536), 'no server flight')   # ServerHello .. Finished
            sock.close()

        tls12 = client_ctx()
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx = client_ctx()
        before = self.released(0)
        expected = 0
        _, session, _ = handshake(self.a.tls_port, ctx=ctx)
        expected += 1
        for _ in range(3):
            handshake(self.a.tls_port, ctx=tls12)
            abandon()
            _, session, reused = handshake(self.a.tls_port, session=session, ctx=ctx)
            self.assertTrue(reused)
            lines, _ = finished_with_command(self.a.tls_port, ctx, session=session)
            self.assertTrue(any(l.startswith(b'a1 OK') for l in lines), lines)
            expected += 2
        deadline = time.time() + 5
        while self.released(before) < expected and time.time() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.released(before), expected)

    def test_starttls_session_is_released_too(self):
        before = self.released(0)
        m = imaplib.IMAP4('127.0.0.1', self.a.port)
        m.starttls(ssl_context=self.env.tls_context())
        self.assertEqual(m.login('user31', USERS['user31'])[0], 'OK')
        self.assertEqual(m.select('INBOX')[0], 'OK')
        m.logout()
        self.assertGreaterEqual(self.released(before), 1)

    def test_key_update_both_ways(self):
        """openssl s_client sends KeyUpdate: 'K' asks usher to update its own
        keys too, 'k' does not. Commands after each still work."""
        p = subprocess.Popen(['openssl', 's_client', '-connect', '127.0.0.1:%d' % self.a.tls_port,
                              '-tls1_3', '-servername', 'localhost'],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            def until(needle, timeout=10):
                out, end = b'', time.time() + timeout
                while needle not in out and time.time() < end:
                    if select.select([p.stdout], [], [], 0.2)[0]:
                        chunk = os.read(p.stdout.fileno(), 65536)
                        if not chunk:
                            break
                        out += chunk
                return out
            self.assertIn(b'* OK', until(b'usher ready'))
            for cmd in (b'a LOGIN alice ' + USERS['alice'].encode(), b'K', b'b NOOP', b'k',
                        b'c SELECT INBOX', b'K', b'd NOOP'):
                p.stdin.write(cmd + b'\n')
                p.stdin.flush()
                if cmd[:1] in b'Kk':
                    time.sleep(0.3)
                    continue
                tag = cmd.split()[0]
                self.assertIn(tag + b' OK', until(tag + b' OK'), cmd)
        finally:
            p.kill()
            _, err = p.communicate()
        self.assertGreaterEqual(err.count(b'KEYUPDATE'), 3)

    def test_garbage_and_floods_in_the_handshake_close_the_connection(self):
        """Plain IMAP on the TLS port, and a flood of bytes that claim to
        be a handshake: each connection is closed at once, and a normal
        client is served after them."""
        def closed_by_usher(sock, send, timeout=8):
            sock.settimeout(timeout)
            try:
                sock.sendall(send)
                while sock.recv(65536):
                    pass
                return True
            except (ConnectionResetError, BrokenPipeError):
                return True
            except socket.timeout:
                return False
            finally:
                sock.close()
        port = self.a.tls_port
        plain = socket.create_connection(('127.0.0.1', port))
        self.assertTrue(closed_by_usher(plain, b'a1 LOGIN alice secret\r\n'))
        # A record header announcing 16 KiB of handshake, then 200 KiB of it.
        flood = socket.create_connection(('127.0.0.1', port))
        self.assertTrue(closed_by_usher(flood, b'\x16\x03\x01\x40\x00' + b'\x01' * 200000))
        self.assertIn('reason=tls_handshake_failed', self.a.log())
        m = imaplib.IMAP4_SSL('127.0.0.1', port, ssl_context=CLIENT_CTX)
        self.assertEqual(m.login('alice', USERS['alice'])[0], 'OK')
        m.logout()

    def test_server_order_of_suites(self):
        # Python's client, like OpenSSL's, offers AES-256-GCM first; usher
        # picks AES-128-GCM unless told otherwise, and the record layer that
        # takes over carries either suite.
        for proxy, suite in ((self.a, 'TLS_AES_128_GCM_SHA256'),
                             (self.c, 'TLS_CHACHA20_POLY1305_SHA256')):
            before = self.released(0) if proxy is self.a else None
            m = imaplib.IMAP4_SSL('127.0.0.1', proxy.tls_port, ssl_context=client_ctx())
            self.assertEqual(m.sock.cipher()[0], suite)
            self.assertEqual(m.login('user33', USERS['user33'])[0], 'OK')
            self.assertEqual(m.select('INBOX')[0], 'OK')
            m.logout()
            if before is not None:
                self.assertGreater(self.released(before), 0)
        ctx = client_ctx()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        m = imaplib.IMAP4_SSL('127.0.0.1', self.a.tls_port, ssl_context=ctx)
        self.assertEqual(m.sock.cipher()[0], 'ECDHE-ECDSA-AES128-GCM-SHA256')
        m.logout()

    def test_tls_1_2_stays_with_openssl(self):
        before = self.released(0)
        ctx = client_ctx()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        m = imaplib.IMAP4_SSL('127.0.0.1', self.a.tls_port, ssl_context=ctx)
        self.assertEqual(m.sock.version(), 'TLSv1.2')
        self.assertEqual(m.login('user32', USERS['user32'])[0], 'OK')
        self.assertEqual(m.select('INBOX')[0], 'OK')
        m.logout()
        self.assertEqual(self.released(before), 0)

    def test_command_in_the_packet_of_the_finished_is_answered(self):
        # The command arrives with the end of the handshake, before anything
        # on the socket would wake a reader: usher hands it to the side that
        # carries the session on (our record layer on TLS 1.3, OpenSSL's
        # filter on TLS 1.2), which must answer it at once.
        for port in (self.a.tls_port, self.b.tls_port):
            lines, obj = finished_with_command(port, client_ctx())
            self.assertEqual(obj.version(), 'TLSv1.3')
            self.assertTrue(lines[0].startswith(b'* OK'), lines)
            self.assertTrue([l for l in lines if l.startswith(b'a1 OK')], lines)
        # TLS 1.2, resumed: the client's Finished comes last.
        ctx = client_ctx()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        _, session, _ = handshake(self.b.tls_port, ctx=ctx)
        lines, obj = finished_with_command(self.b.tls_port, ctx, session=session)
        self.assertTrue(obj.session_reused)
        self.assertEqual(obj.version(), 'TLSv1.2')
        self.assertTrue([l for l in lines if l.startswith(b'a1 OK')], lines)

    def test_forged_record_closes_the_session(self):
        raw = socket.create_connection(('127.0.0.1', self.a.tls_port), timeout=10)
        s = CLIENT_CTX.wrap_socket(raw, server_hostname='localhost')
        self.assertTrue(s.recv(1024).startswith(b'* OK'))
        time.sleep(0.2)
        # An application-data record whose tag cannot be right.
        os.write(s.fileno(), bytes([23, 3, 3, 0, 40]) + os.urandom(40))
        raw_closed = False
        try:
            raw_closed = s.recv(1024) == b''
        except (ssl.SSLError, ConnectionResetError):
            raw_closed = True
        self.assertTrue(raw_closed)
        s.close()
        # The next client is served normally.
        m = imaplib.IMAP4_SSL('127.0.0.1', self.a.tls_port, ssl_context=self.env.tls_context())
        self.assertEqual(m.login('user33', USERS['user33'])[0], 'OK')
        m.logout()

    def test_client_renegotiation_is_refused(self):
        """TLS 1.2 (TLS 1.3 has no renegotiation): s_client's 'R' asks for
        one; usher answers no_renegotiation and serves others meanwhile."""
        p = subprocess.Popen(['openssl', 's_client', '-connect', '127.0.0.1:%d' % self.a.tls_port,
                              '-tls1_2'], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        try:
            out, end = b'', time.time() + 10
            while b'usher ready' not in out and time.time() < end:
                if select.select([p.stdout], [], [], 0.2)[0]:
                    out += os.read(p.stdout.fileno(), 65536)
            self.assertIn(b'usher ready', out)
            p.stdin.write(b'R\n')
            p.stdin.flush()
            _, err = p.communicate(timeout=10)
        finally:
            if p.poll() is None:
                p.kill()
        self.assertIn(b'RENEGOTIATING', err)
        self.assertIn(b'no renegotiation', err)
        m = imaplib.IMAP4_SSL('127.0.0.1', self.a.tls_port, ssl_context=self.env.tls_context())
        self.assertEqual(m.login('user34', USERS['user34'])[0], 'OK')
        m.logout()

    def test_tls_1_1_is_refused(self):
        ctx = client_ctx()
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        with self.assertRaises((ssl.SSLError, ConnectionResetError)):
            handshake(self.a.tls_port, ctx=ctx)


class TicketRotationTest(unittest.TestCase):
    """Keys change every ticket_lifetime; a ticket made just before a change
    still resumes just after it (the previous period's key is accepted)."""

    def test_resumes_across_a_key_change(self):
        env = harness.Env()
        try:
            env.dovecot('backend1')
            u = env.usher(workers=2, extra={'tls': {'ticket_lifetime': '3s'},
                                            'usher': {'log_level': 'debug'}})
            # Just before a period boundary (periods are wall-clock aligned)...
            time.sleep(3 - (time.time() % 3) + 2.3)
            _, session, reused = handshake(u.tls_port)
            self.assertFalse(reused)
            # ... and just after it.
            time.sleep(3 - (time.time() % 3) + 0.4)
            _, session2, reused = handshake(u.tls_port, session=session)
            self.assertTrue(reused, 'a ticket of the previous period must still resume')
            self.assertGreaterEqual(u.log().count('event=ticket_keys period='), 2)
            self.assertEqual(u.stop(), 0)
        finally:
            env.close()   # raises with the log lines of any crash


if __name__ == '__main__':
    unittest.main()
