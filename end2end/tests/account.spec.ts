// API tokens from "My account": created in the portal and shown once, they let a script call
// the API as the user; revoked, they stop working.
import { expect, request as playwrightRequest, test } from "@playwright/test";
import { hydrated } from "./hydrated";

const password = process.env.PORTAL_ADMIN_PASSWORD!;

test("an API token made in the portal calls the API until it is revoked", async ({ page }) => {
  await page.goto("/login");
  await hydrated(page);
  await page.getByTestId("login-username").fill("admin");
  await page.getByTestId("login-password").fill(password);
  await page.getByTestId("login-submit").click();
  await expect(page.getByTestId("whoami")).toContainText("admin");
  await hydrated(page);
  await page.getByTestId("nav-account").click();
  await hydrated(page);
  await expect(page.getByTestId("account")).toContainText("Tenant default");
  await expect(page.getByTestId("session-table")).toContainText("(this browser)");

  const form = page.getByTestId("token-form");
  await form.locator('input[name="name"]').fill("ci-pipeline");
  await form.getByRole("button", { name: "Create token" }).click();
  const token = (await page.getByTestId("token-secret").textContent())!.trim();
  expect(token).toMatch(/^gpc_[A-Za-z0-9]{40}$/);
  const row = page.locator('[data-testid="token-row"][data-name="ci-pipeline"]');
  await expect(row).toContainText("never");

  const script = await playwrightRequest.newContext({
    baseURL: process.env.E2E_BASE_URL,
    extraHTTPHeaders: { Authorization: `Bearer ${token}` },
  });
  const list = await script.post("/api/fn/instance_list", { form: {} });
  expect(list.status()).toBe(200);
  // A token never acts as a provider admin.
  expect((await script.post("/api/fn/fleet_summary", { form: {} })).status()).toBe(403);

  await row.getByRole("button", { name: "Revoke" }).click();
  await expect(row).toContainText("revoked");
  expect((await script.post("/api/fn/instance_list", { form: {} })).status()).toBe(401);
});

test("an invited user chooses their own password first; the one-time one stops working", async ({ page }) => {
  // The admin invites pat, who signs in with the one-time password.
  const admin = await playwrightRequest.newContext({ baseURL: process.env.E2E_BASE_URL });
  expect((await admin.post("/api/fn/login", { form: { username: "admin", password } })).status()).toBe(200);
  const me = await (await admin.post("/api/fn/get_me", { form: {} })).json();
  const invited = await admin.post("/api/fn/user_invite", { form: { tenant_id: me.tenant_id, username: "pat", role: "member" } });
  expect(invited.status()).toBe(200);
  const first = (await invited.json()).one_time_password as string;

  const signIn = async (secret: string) => {
    await page.goto("/login");
    await hydrated(page);
    await page.getByTestId("login-username").fill("pat");
    await page.getByTestId("login-password").fill(secret);
    await page.getByTestId("login-submit").click();
  };
  // The one-time password leads straight to choosing one's own.
  await signIn(first);
  await expect(page).toHaveURL(/\/account$/);
  await expect(page.getByTestId("password-required")).toBeVisible();
  await hydrated(page);
  const form = page.getByTestId("password-form");
  const change = async (current: string, next: string, repeat: string) => {
    await form.locator('input[name="current"]').fill(current);
    await form.locator('input[name="new"]').fill(next);
    await form.locator('input[name="repeat"]').fill(repeat);
    await form.getByRole("button", { name: "Change password" }).click();
  };
  const chosen = "pat's own long passphrase";
  await change("not-my-password", chosen, chosen);
  await expect(page.getByTestId("password-error")).toHaveText("The current password is wrong; type it again.");
  await change(first, chosen, chosen);
  await expect(page.getByTestId("password-changed")).toBeVisible();
  // This browser stays signed in.
  await expect(page.getByTestId("session-table")).toContainText("(this browser)");
  await page.goto("/");
  await expect(page.getByTestId("whoami")).toContainText("pat");
  await hydrated(page);
  await page.getByTestId("logout").click();
  await expect(page).toHaveURL(/\/login$/);

  await signIn(first);
  await expect(page.getByTestId("login-error")).toBeVisible();
  await signIn(chosen);
  await expect(page.getByTestId("whoami")).toContainText("pat");
});
