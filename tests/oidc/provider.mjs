// A real OpenID Connect provider for the e2e tests of external sign-in: the certified
// `oidc-provider` package, on a free loopback port, with its own login and consent pages.
//
// Prints one JSON line {"issuer": "http://127.0.0.1:PORT", "kid": "..."} on stdout once it
// listens: on PORT from the environment, else a free port.
//
// Signs ID tokens (RS256) with a key made at start, its kid new each time: a provider started
// again on the same port has rotated its key, as a real one does.
//
// Clients (PKCE required, S256):
// - CLIENT_ID / CLIENT_SECRET (client_secret_basic), redirect URI `${issuer}/signed-in` (a page
//   here that only says so: the browser stops there and the test reads its URL);
// - `cwsm-cli`, a public native client (no secret: PKCE alone) whose redirect URI
//   `http://127.0.0.1/callback` allows any port (RFC 8252), for `cwsm sign-in --provider`.
//
// Accounts: any login on the login page, any password (these are the provider's development
// pages: the test drives them like a person would). The login says what the account is:
//   verified/<email>    an account whose e-mail the provider vouches for (email_verified true)
//   unverified/<email>  one whose e-mail it does not vouch for (email_verified false)
//   anything else       an account with no e-mail at all
// and the subject (`sub`) is the login itself, so a test knows it in advance.
import crypto from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';

const clientId = process.env.CLIENT_ID || 'cwsm-test';
const clientSecret = process.env.CLIENT_SECRET || 'cwsm-test-secret';

function claimsOf(login) {
  const [kind, ...rest] = login.split('/');
  const email = rest.join('/');
  if (kind === 'verified' && email) return { email, email_verified: true };
  if (kind === 'unverified' && email) return { email, email_verified: false };
  return {};
}

const signingKey = {
  ...crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  kid: crypto.randomUUID(),
  alg: 'RS256',
  use: 'sig',
};

const server = http.createServer();
server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: [`${issuer}/signed-in`],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        client_id: 'cwsm-cli',
        application_type: 'native',
        redirect_uris: ['http://127.0.0.1/callback'],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
      },
    ],
    pkce: { required: () => true },
    // The e-mail claims in the ID token itself (the code flow would otherwise put them only
    // in the userinfo response).
    conformIdTokenClaims: false,
    claims: { openid: ['sub'], email: ['email', 'email_verified'] },
    scopes: ['openid', 'email'],
    features: { devInteractions: { enabled: true } },
    cookies: { keys: ['cwsm-test-only-cookie-key'] },
    jwks: { keys: [signingKey] },
    async findAccount(ctx, sub) {
      return {
        accountId: sub,
        async claims() {
          return { sub, ...claimsOf(sub) };
        },
      };
    },
  });
  // Development pages over plain HTTP on the loopback: say so once, not on every request.
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  provider.use(async (ctx, next) => {
    if (ctx.path === '/signed-in') {
      ctx.type = 'text/html';
      ctx.body = '<!doctype html><title>signed in</title><p id="done">signed in: the app reads this URL</p>';
      return;
    }
    await next();
  });
  server.on('request', provider.callback());
  console.log(JSON.stringify({ issuer, kid: signingKey.kid }));
});

process.on('SIGTERM', () => server.close(() => process.exit(0)));
