"""The demo: two real Dovecot backends on loopback sharing one mail store,
a few users with mail, and usher in front. Runs until Ctrl-C, then stops
everything and removes its temporary directory. Started by scripts/demo."""
import imaplib
import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests',
                                'integration'))
import harness  # noqa: E402

DEMO_USERS = {'alice': 'alice-pw', 'bob': 'bob-pw', 'carol': 'carol-pw'}


def port_or_free(wanted):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(('127.0.0.1', wanted))
            return wanted
        except OSError:
            return harness.free_port()


def seed_mail(port):
    """Three messages per user, appended through usher itself."""
    for user, pw in DEMO_USERS.items():
        imap = imaplib.IMAP4('127.0.0.1', port)
        imap.login(user, pw)
        for i in range(1, 4):
            msg = ('From: demo@example.org\r\nTo: %s@example.org\r\n'
                   'Subject: Welcome %d of 3\r\n\r\nHello %s, this is demo message %d.\r\n'
                   % (user, i, user, i)).encode()
            imap.append('INBOX', None, None, msg)
        imap.logout()


def main():
    env = harness.Env()
    env.write_users(DEMO_USERS)
    try:
        b1, b2 = env.dovecot('backend1'), env.dovecot('backend2')
        u = env.usher(backends=[b1, b2], port=port_or_free(1143), tls_port=port_or_free(1993))
        seed_mail(u.port)
        print(f"""
usher is running in front of two Dovecot backends.

  IMAP with STARTTLS : 127.0.0.1:{u.port}
  IMAP over TLS      : 127.0.0.1:{u.tls_port}   (self-signed: {env.cert})
  backends           : backend1 127.0.0.1:{b1.port}, backend2 127.0.0.1:{b2.port}
  users              : alice / alice-pw, bob / bob-pw, carol / carol-pw
  configuration      : {u.conf}
  usher's log        : {u.log_path}

Try:
  curl -s imap://127.0.0.1:{u.port}/INBOX -u alice:alice-pw -X 'FETCH 1:* (FLAGS)'
  curl -s --cacert {env.cert} imaps://localhost:{u.tls_port}/INBOX\\;UID=1 -u bob:bob-pw
  curl -s --ssl-reqd --cacert {env.cert} imap://localhost:{u.port}/ -u carol:carol-pw
  python3 -c "import imaplib; m=imaplib.IMAP4('127.0.0.1',{u.port}); \\
print(m.login('alice','alice-pw')); print(m.xatom('ID','NIL')); print(m.response('ID'))"
  (the ID answer names the backend usher seated the user on)

In a mail client (Thunderbird, mutt, mbsync): server 127.0.0.1, port {u.port},
STARTTLS, or port {u.tls_port} with SSL/TLS; accept the self-signed certificate.

Press Ctrl-C to stop.""", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while u.proc.poll() is None:
            time.sleep(1)
        print('usher exited with', u.proc.returncode, file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        try:
            env.close()
        except AssertionError as e:   # a crash: show its log lines, not a traceback
            print(e, file=sys.stderr)
        print('demo stopped; everything removed.')


if __name__ == '__main__':
    main()
