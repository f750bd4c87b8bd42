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
