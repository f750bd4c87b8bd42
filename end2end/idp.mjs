// The OpenID provider of the end2end run: npm `oidc-provider` (OpenID Certified) on
// 127.0.0.1:9400 with its development login form (any login name signs in, the password is
// ignored) and one confidential client, `portal`, for the portal under test. Accounts get an
// e-mail address and groups: `alice` is in "ml-team", anyone else in no group.
//
// Started by playwright.config.ts as a webServer; also usable by hand: `node idp.mjs`.
import { Provider } from "oidc-provider";

const port = Number(process.env.IDP_PORT ?? 9400);
const issuer = `http://127.0.0.1:${port}`;
const portal = process.env.E2E_BASE_URL ?? `http://127.0.0.1:${process.env.E2E_PORT ?? "3100"}`;

export const client = { id: "portal", secret: "portal-secret" };

const groupsOf = (login) => (login === "alice" ? ["ml-team"] : []);

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: client.id,
      client_secret: client.secret,
      redirect_uris: [`${portal}/auth/oidc/callback`],
      post_logout_redirect_uris: [`${portal}/login`],
      response_types: ["code"],
      grant_types: ["authorization_code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  // Released with the scopes the portal asks for (openid email profile). With the code
  // flow oidc-provider keeps them out of the ID token by default (conformIdTokenClaims), so
  // the portal reads them from userinfo, as it must for providers that behave this way.
  claims: {
    openid: ["sub", "groups"],
    email: ["email", "email_verified"],
    profile: ["name"],
  },
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
  // Test-only keys for cookies; the signing keys are oidc-provider's development keys.
  cookies: { keys: ["e2e-only-cookie-key"] },
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          email: `${sub}@example.com`,
          email_verified: true,
          name: sub,
          groups: groupsOf(sub),
        };
      },
    };
  },
});

provider.listen(port, "127.0.0.1", () => {
  console.log(`oidc-provider listening on ${issuer}, client ${client.id} → ${portal}`);
});
