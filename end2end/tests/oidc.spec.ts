// Single sign-on through a real OpenID provider (npm oidc-provider on 127.0.0.1:9400, started
// by playwright.config.ts from idp.mjs): a provider admin registers it on /admin/identity
// with the rule "ml-team → member", then alice signs in with it from the sign-in page, lands
// on the dashboard in the default tenant as a member, and signing out ends her session.
import { expect, test } from "@playwright/test";

const password = process.env.PORTAL_ADMIN_PASSWORD!;
const issuer = "http://127.0.0.1:9400";

test("a provider admin adds an identity provider and alice signs in with it as a member", async ({ page }) => {
  const consoleErrors: string[] = [];
  page.on("pageerror", (e) => consoleErrors.push(e.message));
  // The refusal the test provokes (400, a bad role rule) is logged by the browser as a failed
  // load; only the portal's pages count, the provider's development pages are not ours.
  const provoked = /^Failed to load resource: the server responded with a status of 400/;
  page.on("console", (m) => {
    if (m.type() === "error" && !provoked.test(m.text()) && page.url().startsWith(process.env.E2E_BASE_URL!)) {
      consoleErrors.push(m.text());
    }
  });

  // The admin signs in locally and registers the provider.
  await page.goto("/login");
  await expect(page.getByTestId("sso-button")).toHaveCount(0);
  await page.getByTestId("login-username").fill("admin");
  await page.getByTestId("login-password").fill(password);
  await page.getByTestId("login-submit").click();
  await expect(page.getByTestId("whoami")).toContainText("admin");

  await page.goto("/admin/identity");
  const form = page.getByTestId("idp-form");
  await form.locator('input[name="form[name]"]').fill("corp");
  await form.locator('input[name="form[display_name]"]').fill("Corp SSO");
  await form.locator('input[name="form[issuer_url]"]').fill(issuer);
  await form.locator('input[name="form[client_id]"]').fill("portal");
  await form.locator('input[name="form[client_secret]"]').fill("portal-secret");
  await form.locator('input[name="form[tenant]"]').fill("default");
  await form.locator('textarea[name="form[role_rules]"]').fill("ml-team=member");
  await form.locator('select[name="form[default_role]"]').selectOption("viewer");
  await form.getByRole("button", { name: "Add provider" }).click();
  const row = page.locator('[data-testid="idp-row"][data-name="corp"]');
  await expect(row).toContainText(issuer);
  await expect(row).toContainText("ml-team=member");
  // The secret is never shown back.
  await expect(page.locator("body")).not.toContainText("portal-secret");

  // A bad rule is refused with a sentence and nothing is added.
  await form.locator('input[name="form[name]"]').fill("broken");
  await form.locator('textarea[name="form[role_rules]"]').fill("ml-team member");
  await form.getByRole("button", { name: "Add provider" }).click();
  await expect(page.getByTestId("idp-error")).toContainText("is not of the form group=role");
  await expect(page.getByTestId("idp-row")).toHaveCount(1);

  // Sign out; the sign-in page now offers the provider.
  await page.goto("/");
  await page.getByTestId("logout").click();
  await expect(page).toHaveURL(/\/login$/);
  const button = page.locator('[data-testid="sso-button"][data-name="corp"]');
  await expect(button).toHaveText("Sign in with Corp SSO");

  // Single sign-on: the provider's development login form, then its consent page.
  await button.click();
  await expect(page).toHaveURL(new RegExp(`^${issuer}/interaction/`));
  await page.fill("input[name=login]", "alice");
  await page.fill("input[name=password]", "anything");
  await page.getByRole("button", { name: "Sign-in" }).click();
  await page.getByRole("button", { name: "Continue" }).click();

  // Back on the dashboard as alice, in the provider's tenant, with the mapped role.
  await expect(page).toHaveURL(/127\.0\.0\.1:\d+\/$/);
  await expect(page.getByTestId("whoami")).toContainText("alice@example.com (corp) · default · member");
  await expect(page.getByTestId("nav-admin")).toHaveCount(0);

  // Signing out ends the session here and, RP-initiated, at the provider, which asks and
  // then sends the browser back to the sign-in page.
  await page.getByTestId("logout").click();
  await expect(page).toHaveURL(new RegExp(`^${issuer}/session/end`));
  await page.getByRole("button", { name: /sign me out/i }).click();
  await expect(page).toHaveURL(/\/login$/);
  await page.goto("/");
  await expect(page).toHaveURL(/\/login$/);

  expect(consoleErrors).toEqual([]);
});

test("a refused single sign-on comes back to the sign-in page as one sentence", async ({ page }) => {
  // A callback nobody started: no state, nonce or PKCE verifier in this browser's session.
  await page.goto("/auth/oidc/callback?code=stolen&state=guess");
  await expect(page).toHaveURL(/\/login\?sso=[0-9a-f]{16}$/);
  await expect(page.getByTestId("sso-error")).toContainText("no state, nonce or PKCE verifier in the session");
  // An unknown provider.
  await page.goto("/auth/oidc/nope/login");
  await expect(page.getByTestId("sso-error")).toHaveText("No identity provider named nope exists.");
  // A crafted link cannot put words on the sign-in page, nor show another browser's refusal.
  await page.goto("/login?sso=0123456789abcdef");
  await expect(page.getByTestId("login-username")).toBeVisible();
  await expect(page.getByTestId("sso-error")).toHaveCount(0);
  await page.goto("/login?error=Your+account+is+locked%3B+call+555-0100");
  await expect(page.getByTestId("login-username")).toBeVisible();
  await expect(page.locator("body")).not.toContainText("call 555");
});
