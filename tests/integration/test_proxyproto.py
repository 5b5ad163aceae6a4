"""Listeners behind an L4 balancer: PROXY protocol v2. The header is taken
only from the configured balancer networks, and the real client address is
what usher logs, limits on, and forwards to the backend in ID."""
import imaplib
import socket
import ssl
import struct
import subprocess
import time
import unittest

import harness
from harness import USERS, RawClient

SIG = b'\r\n\r\n\x00\r\nQUIT\n'


def v2_header(src, dst=('127.0.0.1', 143), tlvs=b'', command=1):
    """A PROXY v2 header as a balancer sends it (TCP over IPv4 or IPv6)."""
    if command == 0:
        return SIG + bytes([0x20, 0x00]) + struct.pack('!H', len(tlvs)) + tlvs
    if ':' in src[0]:
        fam, body = 0x21, (socket.inet_pton(socket.AF_INET6, src[0]) +
                           socket.inet_pton(socket.AF_INET6, dst[0]))
    else:
        fam, body = 0x11, socket.inet_aton(src[0]) + socket.inet_aton(dst[0])
    body += struct.pack('!HH', src[1], dst[1]) + tlvs
    return SIG + bytes([0x21, fam]) + struct.pack('!H', len(body)) + body


def closed_silently(s):
    """True if the server closed s without sending a byte (FIN or RST:
    closing with our bytes unread makes the kernel reset)."""
    try:
        return s.recv(100) == b''
    except ConnectionResetError:
        return True
    finally:
        s.close()


class Balanced:
    """A connection as an L4 balancer makes it: the header, then the client."""

    def __init__(self, port, header, tls_ctx=None):
        self.sock = socket.create_connection(('127.0.0.1', port), timeout=10)
        self.sock.sendall(header)
        if tls_ctx:
            self.sock = tls_ctx.wrap_socket(self.sock, server_hostname='localhost')

    def imap(self):
        """An imaplib client on this connection (header already sent)."""
        sock = self.sock

        class Wrapped(imaplib.IMAP4):
            def _create_socket(self, timeout):
                return sock
        return Wrapped('127.0.0.1', 0)


class ProxyProtocolTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = harness.Env()
        cls.b1 = cls.env.dovecot('backend1')
        cls.lb_port, cls.lb_tls_port, cls.other_port = (harness.free_port() for _ in range(3))
        cls.u = cls.env.usher(workers=1, extra={
            'listener lb': {'address': '127.0.0.1:%d' % cls.lb_port, 'tls': 'starttls',
                            'proxy_protocol': 'yes', 'proxy_from': '127.0.0.0/8 ::1/128'},
            'listener lbtls': {'address': '127.0.0.1:%d' % cls.lb_tls_port, 'tls': 'implicit',
                               'proxy_protocol': 'yes', 'proxy_from': '127.0.0.1'},
            'listener elsewhere': {'address': '127.0.0.1:%d' % cls.other_port,
                                   'proxy_protocol': 'yes', 'proxy_from': '10.0.0.0/8'},
            'limits': {'max_connections_per_ip': 2, 'preauth_timeout': '2s'},
            'throttle': {'ip_failures': 3, 'max_delay': '1s'},
        })

    @classmethod
    def tearDownClass(cls):
        rc = cls.u.stop()
        cls.env.close()   # raises with the log lines of any crash
        assert rc == 0, rc

    def doveadm_who_ips(self):
        out = subprocess.run(['doveadm', '-c', self.b1.conf, 'who'], capture_output=True,
                             text=True).stdout
        return out

    def test_real_address_is_logged_and_forwarded(self):
        b = Balanced(self.lb_port, v2_header(('203.0.113.7', 40007)))
        m = b.imap()
        # 203.0.113.7 is not a trusted network: no LOGIN in the clear for it.
        self.assertIn('LOGINDISABLED', m.capabilities)
        m.starttls(ssl_context=self.env.tls_context())
        m.login('alice', USERS['alice'])
        self.assertEqual(m.select('INBOX')[0], 'OK')
        self.assertIn('203.0.113.7', self.doveadm_who_ips())   # ID x-originating-ip
        log = self.u.log()
        self.assertRegex(log, r'event=connect session=\w+ client=203\.0\.113\.7:40007 '
                              r'listener=lb via=127\.0\.0\.1:\d+')
        m.logout()

    def test_trusted_real_address_may_log_in_in_the_clear(self):
        m = Balanced(self.lb_port, v2_header(('127.0.0.9', 40009))).imap()
        self.assertNotIn('LOGINDISABLED', m.capabilities)
        self.assertEqual(m.login('bob', USERS['bob'])[0], 'OK')
        m.logout()

    def test_ipv6_client_and_tlvs(self):
        tlv = bytes([0x02]) + struct.pack('!H', 11) + b'example.org'   # PP2_TYPE_AUTHORITY
        m = Balanced(self.lb_port, v2_header(('2001:db8::5', 40011), ('::1', 143), tlv)).imap()
        m.starttls(ssl_context=self.env.tls_context())
        self.assertEqual(m.login('carol', USERS['carol'])[0], 'OK')
        self.assertIn('client=[2001:db8::5]:40011', self.u.log())
        m.logout()

    def test_implicit_tls_after_the_header(self):
        b = Balanced(self.lb_tls_port, v2_header(('198.51.100.20', 40020)),
                     tls_ctx=self.env.tls_context())
        m = b.imap()
        self.assertEqual(m.login('user01', USERS['user01'])[0], 'OK')
        m.logout()
        self.assertIn('client=198.51.100.20:40020 listener=lbtls', self.u.log())

    def test_per_address_limit_counts_real_addresses(self):
        header = v2_header(('192.0.2.50', 40050))
        held = [RawClient.__new__(RawClient) for _ in range(2)]
        for c in held:
            c.sock, c.buf = Balanced(self.lb_port, header).sock, b''
            self.assertTrue(c.line().startswith(b'* OK'))
        third = RawClient.__new__(RawClient)
        third.sock, third.buf = Balanced(self.lb_port, header).sock, b''
        self.assertTrue(third.line().startswith(b'* BYE [UNAVAILABLE] Too many connections'))
        # Another client behind the same balancer is not affected.
        other = Balanced(self.lb_port, v2_header(('192.0.2.51', 40051))).imap()
        self.assertEqual(other.noop()[0], 'OK')
        other.logout()
        for c in held + [third]:
            c.close()

    def mapped(self, ip, port):
        m = Balanced(self.lb_port, v2_header(('::ffff:' + ip, port),
                                             ('::ffff:127.0.0.1', 143))).imap()
        m.starttls(ssl_context=self.env.tls_context())
        return m

    def test_ipv4_mapped_clients_are_ipv4_clients(self):
        """A dual-stack balancer writes IPv4 clients as ::ffff:a.b.c.d. Each
        is its own IPv4 client, in the log and in throttling: failures from
        one used to count against ::/64, which banned every other."""
        for i in range(3):   # ip_failures = 3: this address is refused now
            m = self.mapped('203.0.113.70', 40070 + i)
            with self.assertRaises(imaplib.IMAP4.error):   # a name each: the delay stays short
                m.login('user%02d' % (30 + i), 'wrong-%d' % i)
            m.logout()
        m = self.mapped('198.51.100.9', 40080)
        self.assertEqual(m.login('alice', USERS['alice'])[0], 'OK')
        m.logout()
        self.assertIn('client=203.0.113.70:40070 listener=lb', self.u.log())
        self.assertNotIn('::ffff:', self.u.log())

    def test_local_command_is_the_balancers_own_check(self):
        m = Balanced(self.lb_port, v2_header(None, command=0)).imap()
        self.assertEqual(m.noop()[0], 'OK')
        m.logout()

    def test_header_only_from_the_balancers_networks(self):
        s = socket.create_connection(('127.0.0.1', self.other_port), timeout=5)
        s.sendall(v2_header(('203.0.113.66', 40066)))
        self.assertTrue(closed_silently(s))
        self.assertIn('event=proxy_refused', self.u.log())

    def test_bad_headers_are_refused_and_others_served(self):
        for junk in (b'a001 LOGIN alice alice-pw\r\n',
                     SIG + bytes([0x11, 0x11, 0, 12]) + b'\0' * 12,        # version 1
                     SIG + bytes([0x21, 0x11, 0, 4]) + b'\0' * 4,          # too short for IPv4
                     SIG + bytes([0x21, 0x11, 0xff, 0xff])):               # longer than max_line
            s = socket.create_connection(('127.0.0.1', self.lb_port), timeout=5)
            s.sendall(junk)
            self.assertTrue(closed_silently(s), junk)
        self.assertGreaterEqual(self.u.log().count('event=proxy_header_bad'), 4)
        m = Balanced(self.lb_port, v2_header(('127.0.0.10', 40010))).imap()
        self.assertEqual(m.login('user02', USERS['user02'])[0], 'OK')
        m.logout()

    def test_truncated_header_times_out(self):
        s = socket.create_connection(('127.0.0.1', self.lb_port), timeout=10)
        s.sendall(v2_header(('203.0.113.9', 1))[:20])
        t0 = time.time()
        self.assertTrue(closed_silently(s))
        self.assertLess(time.time() - t0, 5)


if __name__ == '__main__':
    unittest.main()
