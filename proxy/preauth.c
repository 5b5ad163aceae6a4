/* The IMAP dialogue before login: CAPABILITY, NOOP, LOGOUT, ID, STARTTLS,
 * LOGIN and AUTHENTICATE PLAIN. Everything else is a tagged BAD, counted
 * against max_bad_commands. Bytes the parser has consumed are wiped from the
 * input buffer before it is drained, since they may hold a password. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "proxy/preauth.h"

#include "proxy/imap_parser.h"
#include "common/log.h"
#include "proxy/sasl.h"
#include "common/util.h"
#include "proxy/client.h"
#include "proxy/tlsaccept.h"

#define MAX_USER_LEN 255
#define MAX_PASSWORD_LEN 1024

/* Who takes a LOGIN from here: one for the whole worker (preauth_setup). */
static preauth_login_fn *login_handler;

static void preauth_read(struct client *c);
static void preauth_flushed(struct client *c);
static void preauth_timer(struct client *c);

static const struct client_handlers preauth_handlers = {
  .input = preauth_read,
  .flushed = preauth_flushed,
  .timer = preauth_timer,
};

void preauth_setup(preauth_login_fn *login) {
  login_handler = login;
}

static int plaintext_allowed(const struct client *c) {
  return c->front.is_tls || c->plaintext_ok;
}

#define PRIVACY_REQUIRED "NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure connections."

/* The parser asks before it has us invite a literal. Where plaintext
 * logins are refused, a literal of LOGIN or AUTHENTICATE can only be a
 * name or a password that must not cross this connection in the clear:
 * no "+" invites it, and the command is answered PRIVACYREQUIRED. */
static int literal_refused(void *client, const char *tag, const char *name) {
  (void)tag;
  const struct client *c = client;
  return !plaintext_allowed(c) &&
         (!ascii_casecmp(name, "LOGIN") || !ascii_casecmp(name, "AUTHENTICATE"));
}

static void capability_list(const struct client *c, char *out, size_t outlen) {
  snprintf(out, outlen, "IMAP4rev1 SASL-IR ID LITERAL+%s%s",
           c->listener->tls == TLS_STARTTLS && !c->front.is_tls ? " STARTTLS" : "",
           plaintext_allowed(c) ? " AUTH=PLAIN" : " LOGINDISABLED");
}

static size_t greeting(const struct client *c, char *out, size_t outlen) {
  char caps[128];
  capability_list(c, caps, sizeof caps);
  int n = snprintf(out, outlen, "* OK [CAPABILITY %s] usher ready.\r\n", caps);
  return n > 0 && (size_t)n < outlen ? (size_t)n : 0;
}

static void greet(struct client *c) {
  char line[256];
  size_t n = greeting(c, line, sizeof line);
  if (n) client_write(c, "%s", line);
}

/* Re-arms the pre-auth timer: idle timeout, bounded by the total budget. */
static void preauth_arm(struct client *c) {
  const struct config *cfg = c->env->cfg;
  uint64_t spent = now_ms() - c->accepted_ms;
  uint64_t left = spent >= cfg->preauth_budget_ms ? 1 : cfg->preauth_budget_ms - spent;
  client_timer(c, left < cfg->preauth_timeout_ms ? left : cfg->preauth_timeout_ms);
}

static void bad_command(struct client *c, const char *tag, const char *text) {
  client_write(c, "%s BAD %s\r\n", tag ? tag : "*", text);
  if (++c->login->bad_commands >= c->env->cfg->max_bad_commands)
    client_close(c, "* BYE Too many invalid commands.\r\n", "bad_commands");
}

/* Hands the credentials to the login (login.h), which answers the client
 * and, on failure, brings it back here (preauth_resume). */
static void take_credentials(struct client *c, const char *tag, const char *user, const char *pass,
                        const char *mech) {
  if (strlen(user) == 0 || strlen(user) > MAX_USER_LEN || strlen(pass) > MAX_PASSWORD_LEN) {
    client_write(c, "%s NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", tag);
    return;
  }
  login_handler(c, tag, user, pass, mech);
}

/* A string argument: atom or string, no NUL inside. */
static const char *astring(const struct imap_arg *a) {
  if (a->type != IMAP_ARG_ATOM && a->type != IMAP_ARG_STRING) return NULL;
  if (strlen(a->s) != a->len) return NULL;
  return a->s;
}

static void cmd_login(struct client *c, const struct imap_command *cmd) {
  const char *user, *pass;
  if (cmd->nargs != 2 || !(user = astring(&cmd->args[0])) || !(pass = astring(&cmd->args[1]))) {
    bad_command(c, cmd->tag, "LOGIN expects a user name and a password.");
    return;
  }
  if (!plaintext_allowed(c)) {
    client_write(c, "%s " PRIVACY_REQUIRED "\r\n", cmd->tag);
    return;
  }
  take_credentials(c, cmd->tag, user, pass, "LOGIN");
}

/* The PLAIN response, base64 (from SASL-IR or the continuation line). */
static void auth_plain_response(struct client *c, const char *tag, const char *b64, size_t len) {
  unsigned char msg[3 * 260 + 4];
  ssize_t n = base64_decode(b64, len, msg, sizeof msg - 1);
  const char *authz, *authc, *pass;
  if (n < 0) {
    client_write(c, "%s BAD Invalid base64 in the response.\r\n", tag);
  } else if (sasl_plain_split((char *)msg, (size_t)n, &authz, &authc, &pass) != 0) {
    client_write(c, "%s NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", tag);
  } else if (authz[0] && strcmp(authz, authc) != 0) {
    client_write(c, "%s NO [AUTHORIZATIONFAILED] Authorization identity not permitted.\r\n", tag);
  } else {
    take_credentials(c, tag, authc, pass, "PLAIN");
  }
  wipe(msg, sizeof msg);
}

static void cmd_authenticate(struct client *c, const struct imap_command *cmd) {
  if (cmd->nargs < 1 || cmd->nargs > 2 || cmd->args[0].type != IMAP_ARG_ATOM) {
    bad_command(c, cmd->tag, "AUTHENTICATE expects a mechanism.");
    return;
  }
  if (ascii_casecmp(cmd->args[0].s, "PLAIN") != 0) {
    client_write(c, "%s NO [CANNOT] Unsupported authentication mechanism.\r\n", cmd->tag);
    return;
  }
  if (!plaintext_allowed(c)) {
    client_write(c, "%s " PRIVACY_REQUIRED "\r\n", cmd->tag);
    return;
  }
  if (cmd->nargs == 2) {
    const struct imap_arg *ir = &cmd->args[1];
    auth_plain_response(c, cmd->tag, ir->s, ir->len);
    return;
  }
  free(c->login->tag);
  c->login->tag = xstrdup(cmd->tag);
  c->login->auth_continue = 1;
  client_write(c, "+ \r\n");
}

static void cmd_starttls(struct client *c, const struct imap_command *cmd) {
  if (c->listener->tls != TLS_STARTTLS || c->front.is_tls) {
    bad_command(c, cmd->tag, "STARTTLS is not available here.");
    return;
  }
  /* Nothing pipelined behind STARTTLS may survive into the TLS session. */
  struct evbuffer *in = bufferevent_get_input(c->front.bev);
  evbuffer_drain(in, evbuffer_get_length(in));
  client_reading(c, 0);
  c->state = CS_STARTTLS;
  client_write(c, "%s OK Begin TLS negotiation now.\r\n", cmd->tag);
}

static void cmd_id(struct client *c, const struct imap_command *cmd) {
  if (cmd->nargs == 0 || (cmd->args[0].type != IMAP_ARG_LIST_START &&
                          ascii_casecmp(cmd->args[0].s, "NIL") != 0)) {
    bad_command(c, cmd->tag, "ID expects a list or NIL.");
    return;
  }
  client_write(c, "* ID (\"name\" \"usher\")\r\n%s OK ID completed.\r\n", cmd->tag);
}

static void preauth_command(struct client *c, const struct imap_command *cmd) {
  const char *name = cmd->name;
  if (!ascii_casecmp(name, "LOGIN")) {
    cmd_login(c, cmd);
  } else if (!ascii_casecmp(name, "AUTHENTICATE")) {
    cmd_authenticate(c, cmd);
  } else if (!ascii_casecmp(name, "CAPABILITY") && cmd->nargs == 0) {
    char caps[128];
    capability_list(c, caps, sizeof caps);
    client_write(c, "* CAPABILITY %s\r\n%s OK Capability completed.\r\n", caps, cmd->tag);
  } else if (!ascii_casecmp(name, "NOOP") && cmd->nargs == 0) {
    client_write(c, "%s OK NOOP completed.\r\n", cmd->tag);
  } else if (!ascii_casecmp(name, "LOGOUT") && cmd->nargs == 0) {
    char bye[IMAP_MAX_TAG + 64];
    snprintf(bye, sizeof bye, "* BYE Logging out.\r\n%s OK Logout completed.\r\n", cmd->tag);
    client_close(c, bye, "logout");
  } else if (!ascii_casecmp(name, "ID")) {
    cmd_id(c, cmd);
  } else if (!ascii_casecmp(name, "STARTTLS") && cmd->nargs == 0) {
    cmd_starttls(c, cmd);
  } else {
    bad_command(c, cmd->tag, "Unknown command, or not allowed before login.");
  }
}

static void auth_continue_line(struct client *c, const char *line, size_t len) {
  char *tag = c->login->tag;
  c->login->tag = NULL;
  c->login->auth_continue = 0;
  if (len == 1 && line[0] == '*')
    client_write(c, "%s BAD Authentication cancelled.\r\n", tag);
  else
    auth_plain_response(c, tag, line, len);
  free(tag);
}

static void parse_error(struct client *c) {
  enum imap_error e = imap_parser_error(c->login->parser);
  const char *tag = imap_parser_error_tag(c->login->parser);
  if (e == IMAP_ERR_LITERAL_REFUSED) {   /* literal_refused() said so */
    client_write(c, "%s " PRIVACY_REQUIRED "\r\n", tag ? tag : "*");
    return;
  }
  if (imap_parser_error_fatal(c->login->parser)) {
    char bye[128];
    snprintf(bye, sizeof bye, "* BYE [TOOBIG] %s\r\n", imap_error_text(e));
    client_close(c, bye, "too_big");
    return;
  }
  char text[128];
  snprintf(text, sizeof text, "%s%s", e == IMAP_ERR_SYNTAX || e == IMAP_ERR_TOO_MANY_ARGS ? "" : "[TOOBIG] ",
           imap_error_text(e));
  bad_command(c, tag, text);
}

static void preauth_read(struct client *c) {
  struct evbuffer *in = bufferevent_get_input(c->front.bev);
  size_t len;
  while (c->state == CS_PREAUTH && (len = evbuffer_get_length(in)) > 0) {
    char *data = (char *)evbuffer_pullup(in, (ssize_t)len);
    size_t used = 0;
    if (c->login->auth_continue) imap_parser_expect_line(c->login->parser);
    enum imap_status st = imap_parser_feed(c->login->parser, data, len, &used);
    switch (st) {
    case IMAP_NEED_MORE:
      break;
    case IMAP_CONTINUE:
      client_write(c, "+ Ready for literal data\r\n");
      break;
    case IMAP_COMMAND:
      preauth_command(c, imap_parser_command(c->login->parser));
      imap_parser_reset(c->login->parser);
      break;
    case IMAP_LINE: {
      size_t n;
      const char *line = imap_parser_line(c->login->parser, &n);
      auth_continue_line(c, line, n);
      imap_parser_reset(c->login->parser);
      break;
    }
    case IMAP_ERROR:
      parse_error(c);
      if (c->state == CS_CLOSING) return;
      imap_parser_reset(c->login->parser);
      break;
    }
    if (c->state == CS_STARTTLS) return;   /* input already discarded */
    wipe(data, used);
    evbuffer_drain(in, used);
  }
  if (c->state == CS_PREAUTH) preauth_arm(c);
}

/* Back to reading commands after an answered login attempt. */
void preauth_resume(struct client *c) {
  client_forget_login(c);
  c->state = CS_PREAUTH;
  client_set_handlers(c, &preauth_handlers);
  client_hold_input(c, 0);
  client_reading(c, 1);
  preauth_arm(c);
  preauth_read(c);   /* anything the client pipelined meanwhile */
}

static void preauth_timer(struct client *c) {
  if (now_ms() - c->accepted_ms >= c->env->cfg->preauth_budget_ms)
    client_close(c, "* BYE Login time limit exceeded.\r\n", "preauth_budget");
  else
    client_close(c, "* BYE Autologout; idle for too long.\r\n", "preauth_timeout");
}

/* ---- TLS ------------------------------------------------------------------ */

/* After the handshake: the commands, now under TLS. */
static void tls_done(struct client *c, struct bufferevent *bev, int has_input) {
  c->state = CS_PREAUTH;
  client_tls_ready(c, bev, has_input);
}

static const struct tls_accept_handlers implicit_tls = {.greeting = greeting,
                                                        .done = tls_done};
static const struct tls_accept_handlers starttls = {.done = tls_done};

/* STARTTLS: once "OK Begin TLS" is on the wire, the handshake begins on the
 * same socket. Whatever the client pipelined after STARTTLS was discarded
 * (cmd_starttls), so no plaintext command can be smuggled into the TLS
 * session. */
static void preauth_flushed(struct client *c) {
  if (c->state != CS_STARTTLS) return;
  if (tls_accept_start(c, &starttls) != 0) {
    client_free(c, "tls_setup_failed");
    return;
  }
  c->state = CS_TLS_ACCEPT;
}

/* ---- the stage's start and end -------------------------------------------- */

static int peer_is_trusted(const struct config *cfg, const struct netaddr *a) {
  for (unsigned i = 0; i < cfg->n_trusted_nets; i++)
    if (netmask_contains(&cfg->trusted_nets[i], a)) return 1;
  return 0;
}

void preauth_start(struct client *c) {
  const struct config *cfg = c->env->cfg;
  c->plaintext_ok = cfg->plaintext_auth || peer_is_trusted(cfg, &c->peer);
  struct imap_limits lim = {cfg->max_line, cfg->max_literal, cfg->max_line + 2 * cfg->max_literal};
  client_login_new(c);   /* freed when the relay starts */
  c->login->parser = imap_parser_new(&lim);
  imap_parser_set_literal_check(c->login->parser, literal_refused, c);
  client_set_handlers(c, &preauth_handlers);

  client_timer(c, cfg->preauth_timeout_ms);
  if (c->listener->tls == TLS_IMPLICIT) {   /* the greeting follows the handshake */
    c->state = CS_TLS_ACCEPT;
    if (tls_accept_start(c, &implicit_tls) != 0) client_free(c, "tls_setup_failed");
    return;
  }
  c->state = CS_PREAUTH;
  client_open_plain(c);
  greet(c);
}

void preauth_free(struct client *c) {
  if (!c->login) return;
  imap_parser_free(c->login->parser);
  c->login->parser = NULL;
}
