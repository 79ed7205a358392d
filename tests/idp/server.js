// A real OpenID Connect provider (panva/oidc-provider v9) for the portal's test suite.
//
// Run as `node server.js CONFIG.json`; tests/support/oidc_provider.py writes the config and
// starts it. Config keys (all but `clients` and `accounts` optional):
//   port          TCP port on 127.0.0.1; 0 or absent picks a free one (no race with the caller)
//   issuer        issuer identifier; default http://127.0.0.1:PORT. A tamper proxy in front of
//                 the provider passes its own origin here, so that tokens name the proxy.
//   clients       oidc-provider client metadata (client_id, client_secret, redirect_uris, ...)
//   accounts      [{sub, password, claims: {name, email, groups, department, location, ...}}]
//   id_token_claims_in_userinfo_only
//                 true: the ID token carries only sub/iss/aud/... and the profile, email and
//                 groups claims come from the userinfo endpoint alone
//   signing_jwk   private RSA JWK (RS256) to sign with, so a test can re-sign tokens with the
//                 same key; absent: a fresh key is generated at start
//   claims_by_scope
//                 replaces CLAIMS_BY_SCOPE below
// Prints `READY http://127.0.0.1:PORT` on stdout once it accepts connections.
//
// oidc-provider v9 is ESM-only, hence the .js file in a "type": "module" package. On Node 20
// it prints "oidc-provider WARNING: Unsupported runtime" on stderr (it wants Node 22+); it
// runs fine, and the suite only relies on the READY line.
//
// Plain http on 127.0.0.1 works: oidc-provider only marks cookies secure when the request
// itself came over TLS, and it refuses http/localhost redirect_uris only for web clients
// using the implicit flow, which this provider does not offer (responseTypes: ['code']).
// So ordinary `application_type: 'web'` clients with http://127.0.0.1 redirect URIs work.

import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

// Which claims each scope releases. `department` and `location` ride on `profile`, because
// they describe the person the way `name` does; `groups` has its own scope, as with most
// company IdPs (Okta, Keycloak's client scopes), so a relying party that forgets to ask for
// it gets no groups. Keys that are not standard scopes (here `groups`) become valid scopes.
const CLAIMS_BY_SCOPE = {
  openid: ['sub'],
  profile: [
    'name', 'given_name', 'family_name', 'preferred_username', 'locale', 'zoneinfo',
    'department', 'location',
  ],
  email: ['email', 'email_verified'],
  groups: ['groups'],
};

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const accounts = config.accounts ?? [];

/** Escape text for an HTML element or a double-quoted attribute. */
function esc(value) {
  return String(value ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Wrap a body fragment in a minimal page; no external resources (the tests have no network). */
function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>${esc(title)} - Test IdP</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main>
${body}
</main></body>
</html>`;
}

/** Return the account whose sub or (case-insensitive) email is `username`, if the password fits. */
function authenticate(username, password) {
  const wanted = String(username ?? '').trim();
  const account = accounts.find((a) => a.sub === wanted
    || (a.claims?.email && a.claims.email.toLowerCase() === wanted.toLowerCase()));
  // Same answer for an unknown user and a wrong password: tests assert the message.
  return account && account.password === password ? account : undefined;
}

/** Return the signing key: the configured one, or a fresh RSA key. */
function signingKey() {
  if (config.signing_jwk) {
    return { alg: 'RS256', use: 'sig', ...config.signing_jwk };
  }
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };
}

/** Read an application/x-www-form-urlencoded request body. */
async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return Object.fromEntries(new URLSearchParams(body));
}

/** Render the login form, with an error line after a failed attempt. */
function renderLogin(ctx, uid, clientId, { error = '', username = '' } = {}) {
  ctx.type = 'html';
  ctx.body = page('Sign in', `<h1>Sign in</h1>
<p>to continue to ${esc(clientId)}</p>
${error ? `<p id="error" role="alert">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}">
  <p><label for="username">Username or email</label>
  <input id="username" name="username" type="text" autocomplete="username" required autofocus value="${esc(username)}"></p>
  <p><label for="password">Password</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required></p>
  <p><button type="submit">Sign in</button></p>
</form>`);
}

/** Serve /interaction/:uid: the login form, and automatic consent. */
async function interactions(ctx, next) {
  const match = /^\/interaction\/([\w-]+)$/.exec(ctx.path);
  if (!match) return next();
  ctx.set('Cache-Control', 'no-store');

  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { uid, prompt, params } = details;
  if (uid !== match[1]) ctx.throw(400, 'interaction does not match this browser session');

  /** Record the result and send the browser back to the authorization endpoint. */
  const finish = async (result) => {
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
      mergeWithLastSubmission: false,
    });
    ctx.status = 303;
    ctx.redirect(returnTo);
  };

  if (prompt.name === 'login') {
    if (ctx.method === 'GET') {
      return renderLogin(ctx, uid, params.client_id, { username: params.login_hint });
    }
    if (ctx.method !== 'POST') ctx.throw(405);
    const form = await readForm(ctx.req);
    const account = authenticate(form.username, form.password);
    if (!account) {
      ctx.status = 401;
      return renderLogin(ctx, uid, params.client_id, {
        error: 'Invalid username or password', username: form.username,
      });
    }
    return finish({ login: { accountId: account.sub } });
  }

  if (prompt.name === 'consent') {
    // No consent screen: grant exactly what is missing, as a company IdP does for its own
    // (first-party) apps. Comes right after login, or alone when a session already exists.
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    return finish({ consent: { grantId: await grant.save() } });
  }

  return ctx.throw(400, `unsupported prompt ${prompt.name}`);
}

/** Show the sign-out confirmation; `form` is oidc-provider's hidden form with its xsrf token. */
async function logoutSource(ctx, form) {
  ctx.type = 'html';
  // name=logout value=yes ends the whole provider session, not just this client's part.
  ctx.body = page('Sign out', `<h1>Sign out</h1>
<p>Do you want to sign out of the test identity provider?</p>
${form}
<button id="logout-confirm" type="submit" form="op.logoutForm" name="logout" value="yes">Sign out</button>`);
}

/** Show the page reached after sign-out when no post_logout_redirect_uri was given. */
async function postLogoutSuccessSource(ctx) {
  ctx.type = 'html';
  ctx.body = page('Signed out', '<h1>Signed out</h1>\n<p>You have been signed out.</p>');
}

/** Render an error page without the default's external font import. */
async function renderError(ctx, out) {
  ctx.type = 'html';
  ctx.body = page('Error', `<h1>Error</h1>\n${Object.entries(out)
    .map(([key, value]) => `<p><strong>${esc(key)}</strong>: <span class="${esc(key)}">${esc(value)}</span></p>`)
    .join('\n')}`);
}

// Listen first, so that port 0 works and the default issuer names the real port.
const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(config.port ?? 0, '127.0.0.1', resolve);
});
const origin = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(config.issuer ?? origin, {
  clients: config.clients ?? [],
  jwks: { keys: [signingKey()] },
  // Fixed for this process only: sessions never outlive a test run.
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  claims: config.claims_by_scope ?? CLAIMS_BY_SCOPE,
  // oidc-provider's conformIdTokenClaims (default true) keeps scope-released claims out of
  // ID tokens issued with an access token; false puts them in both ID token and userinfo.
  conformIdTokenClaims: Boolean(config.id_token_claims_in_userinfo_only),
  responseTypes: ['code'],
  // PKCE for every client, confidential ones too; v9 supports only S256.
  pkce: { required: () => true },
  async findAccount(ctx, sub) {
    const account = accounts.find((a) => a.sub === sub);
    if (!account) return undefined;
    // oidc-provider filters these by the granted scopes (CLAIMS_BY_SCOPE).
    return { accountId: sub, claims: async () => ({ ...account.claims, sub }) };
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: { enabled: true, logoutSource, postLogoutSuccessSource },
  },
  renderError,
  // Explicit lifetimes, which also silences the "you SHOULD change" notices.
  ttl: {
    AccessToken: 3600, AuthorizationCode: 60, IdToken: 3600, Interaction: 3600,
    Session: 86400, Grant: 86400,
  },
});
provider.use(interactions);

// Log what the provider rejected: a failing test then shows why in the process output.
for (const event of ['server_error', 'authorization.error', 'grant.error', 'userinfo.error',
  'end_session.error', 'end_session_confirm.error', 'jwks.error', 'discovery.error']) {
  provider.on(event, (ctx, err) => {
    console.error(`${event}: ${err.name}: ${err.message} ${err.error_description ?? ''}`.trim());
  });
}

// Static clients are validated lazily, on first use; check them now so that a bad client in a
// test's config fails the start, with oidc-provider's reason in the output.
for (const { client_id: clientId } of config.clients ?? []) {
  await provider.Client.find(clientId);
}

server.on('request', provider.callback());
console.log(`READY ${origin}`);
