// Tenancy through the browser: a provider admin creates a tenant and invites its admin with
// a password shown once; that admin signs in, sees only their tenant, manages its users and
// reads its audit log; provider-only pages refuse them.
import { expect, test } from "@playwright/test";
import { call, invite, session } from "./api";
import { hydrated } from "./hydrated";

const password = process.env.PORTAL_ADMIN_PASSWORD!;

async function signIn(page, username: string, secret: string) {
  await page.goto("/login");
  await hydrated(page);
  await page.getByTestId("login-username").fill(username);
  await page.getByTestId("login-password").fill(secret);
  await page.getByTestId("login-submit").click();
  await expect(page.getByTestId("whoami")).toContainText(username);
  await hydrated(page);
}

test("a provider admin creates a tenant and its admin runs it", async ({ page }) => {
  await signIn(page, "admin", password);
  await page.getByTestId("nav-tenants").click();
  await hydrated(page);
  await page.getByTestId("tenant-form").locator('input[name="name"]').fill("acme");
  await page.getByTestId("tenant-form").getByRole("button", { name: "Create tenant" }).click();
  const acme = page.locator('[data-testid="tenant-row"][data-name="acme"]');
  await expect(acme).toContainText("active");

  // Quotas are set per tenant from its row.
  await acme.getByTestId("tenant-quotas").click();
  await hydrated(page);
  await expect(page.getByRole("heading", { name: "Quotas of acme" })).toBeVisible();
  const quota = page.getByTestId("quota-form");
  await quota.locator('input[name="resource"]').fill("instances");
  await quota.locator('input[name="limit"]').fill("5");
  await quota.getByRole("button", { name: "Set quota" }).click();
  await expect(page.getByTestId("quota-table")).toContainText("instances");
  await page.goto("/admin/tenants");
  await hydrated(page);
  await acme.getByRole("link", { name: "acme" }).click();
  await hydrated(page);
  await expect(page).toHaveURL(/\/users\?tenant=/);
  const invite = page.getByTestId("invite-form");
  await invite.locator('input[name="username"]').fill("alice");
  await invite.locator('select[name="role"]').selectOption("tenant-admin");
  await invite.getByRole("button", { name: "Invite" }).click();
  const secret = (await page.getByTestId("one-time-password").textContent())!.trim();
  expect(secret).toHaveLength(20);
  await expect(page.locator('[data-testid="user-row"][data-name="alice"]')).toContainText("active");

  await page.goto("/");

  await hydrated(page);
  await page.getByTestId("logout").click();
  await expect(page).toHaveURL(/\/login$/);

  // Alice's first sign-in takes her to choose her own password.
  await page.goto("/login");
  await hydrated(page);
  await page.getByTestId("login-username").fill("alice");
  await page.getByTestId("login-password").fill(secret);
  await page.getByTestId("login-submit").click();
  await expect(page).toHaveURL(/\/account$/);
  await expect(page.getByTestId("password-required")).toBeVisible();
  await page.goto("/users");
  await expect(page).toHaveURL(/\/account$/);
  await hydrated(page);
  const own = "alice's own passphrase";
  const form = page.getByTestId("password-form");
  await form.locator('input[name="current"]').fill(secret);
  await form.locator('input[name="new"]').fill(own);
  await form.locator('input[name="repeat"]').fill(own);
  await form.getByRole("button", { name: "Change password" }).click();
  await page.getByTestId("continue").click();
  await expect(page.getByTestId("whoami")).toContainText("acme · tenant-admin");
  await hydrated(page);
  await expect(page.getByTestId("nav-admin")).toHaveCount(0);
  await expect(page.getByTestId("launchable")).toBeVisible();
  await expect(page.locator('[data-resource="instances"]')).toHaveText("instances 0 / 5");

  // Alice invites a viewer into her own tenant.
  await page.getByTestId("nav-users").click();
  await hydrated(page);
  await page.getByTestId("invite-form").locator('input[name="username"]').fill("bob");
  await page.getByTestId("invite-form").getByRole("button", { name: "Invite" }).click();
  await expect(page.locator('[data-testid="user-row"][data-name="bob"]')).toContainText("active");

  // Her audit log holds her tenant's entries, the provider admin's changes to acme among
  // them, but nothing of the provider admin's own tenant (his sign-in).
  await page.goto("/audit");
  await hydrated(page);
  const rows = page.getByTestId("audit-row");
  await expect(page.getByTestId("audit-table")).toContainText("user.invite");
  await expect(rows.filter({ hasText: "alice" }).filter({ hasText: "session.sign_in" })).not.toHaveCount(0);
  await expect(rows.filter({ hasText: "tenant.create" })).toContainText("acme");
  await expect(rows.filter({ hasText: /^.{19}admin/ }).filter({ hasText: "session.sign_in" })).toHaveCount(0);

  // Provider-only pages refuse her.
  await page.goto("/admin/tenants");
  await hydrated(page);
  await expect(page.getByText("Your role does not allow this page.")).toBeVisible();
});

test("anonymous visitors are sent to sign in from every tenancy page", async ({ page }) => {
  for (const path of ["/admin/tenants", "/users", "/audit"]) {
    await page.goto(path);
    await expect(page).toHaveURL(/\/login$/);
  }
});

test("a provider admin added to a second tenant switches between them", async ({ page }) => {
  await signIn(page, "admin", password);
  await page.goto("/admin/tenants");
  await hydrated(page);
  const acme = page.locator('[data-testid="tenant-row"][data-name="acme"]');
  await acme.getByRole("link", { name: "acme" }).click();
  await hydrated(page);
  const add = page.getByTestId("add-form");
  await add.locator('input[name="username"]').fill("admin");
  await add.locator('select[name="role"]').selectOption("member");
  await add.getByRole("button", { name: "Add to this tenant" }).click();
  await expect(page.locator('[data-testid="user-row"][data-name="admin"]')).toBeVisible();

  await page.goto("/");
  await hydrated(page);
  await expect(page.getByTestId("whoami")).toContainText("admin · default");
  await page.getByTestId("tenant-switch").selectOption({ label: "acme (member)" });
  await expect(page.getByTestId("whoami")).toContainText("admin · acme · member");
  await hydrated(page);
  await page.getByTestId("tenant-switch").selectOption({ label: "default (tenant-admin)" });
  await expect(page.getByTestId("whoami")).toContainText("admin · default · tenant-admin");
});

test("deleting a tenant first names what will be lost, then needs its name", async ({ page }) => {
  await signIn(page, "admin", password);
  await page.goto("/admin/tenants");
  await hydrated(page);
  await page.getByTestId("tenant-form").locator('input[name="name"]').fill("doomed");
  await page.getByTestId("tenant-form").getByRole("button", { name: "Create tenant" }).click();
  const doomed = page.locator('[data-testid="tenant-row"][data-name="doomed"]');
  await expect(doomed).toContainText("active");
  // A member, and a quota.
  await doomed.getByRole("link", { name: "doomed" }).click();
  await hydrated(page);
  const invite = page.getByTestId("invite-form");
  await invite.locator('input[name="username"]').fill("dora");
  await invite.getByRole("button", { name: "Invite" }).click();
  const secret = (await page.getByTestId("one-time-password").textContent())!.trim();
  await page.goto("/admin/tenants");
  await hydrated(page);
  await doomed.getByTestId("tenant-quotas").click();
  await hydrated(page);
  await page.getByTestId("quota-form").locator('input[name="resource"]').fill("vcpus");
  await page.getByTestId("quota-form").locator('input[name="limit"]').fill("64");
  await page.getByTestId("quota-form").getByRole("button", { name: "Set quota" }).click();
  await expect(page.getByTestId("quota-table")).toContainText("vcpus");

  await page.goto("/admin/tenants");
  await hydrated(page);
  await doomed.getByTestId("tenant-delete").click();
  const box = page.locator('[data-testid="tenant-deletion"][data-name="doomed"]');
  await expect(box).toContainText("Delete doomed?");
  const lost = box.getByTestId("tenant-deletion-lost");
  await expect(lost).toContainText("1 member loses access: dora");
  await expect(lost).toContainText("dora belongs to no other tenant and can no longer sign in");
  await expect(lost).toContainText("1 quota limit is removed");
  await page.screenshot({ path: "test-results/tenant-deletion.png", fullPage: true });
  // The wrong name is refused with a sentence; the right one deletes.
  await box.getByTestId("tenant-deletion-name").fill("doom");
  await box.getByTestId("tenant-deletion-submit").click();
  await expect(page.getByTestId("tenancy-error")).toHaveText("Type the tenant's name, doomed, to confirm the deletion.");
  await expect(doomed).toHaveCount(1);
  await box.getByTestId("tenant-deletion-name").fill("doomed");
  await box.getByTestId("tenant-deletion-submit").click();
  await expect(doomed).toHaveCount(0);
  await expect(box).toHaveCount(0);

  // Dora can no longer sign in.
  await page.goto("/");
  await hydrated(page);
  await page.getByTestId("logout").click();
  await expect(page).toHaveURL(/\/login$/);
  await hydrated(page);
  await page.getByTestId("login-username").fill("dora");
  await page.getByTestId("login-password").fill(secret);
  await page.getByTestId("login-submit").click();
  await expect(page.getByTestId("login-error")).toBeVisible();
});

test("the audit log pages through its entries, newest first", async ({ page }) => {
  const admin = await session("admin", password);
  const tenant = await call<{ id: string }>(admin, "tenant_create", { name: "pager-co" });
  const invited = await invite(admin, tenant.id, "pager", "tenant-admin");
  const pager = await session("pager", invited.one_time_password);
  // 105 refused token requests, each audited as api_token.create.
  for (let i = 0; i < 105; i++) {
    const r = await pager.post("/api/fn/api_token_create", { form: { name: `t${i}`, role: "viewer", days: "0" } });
    expect(r.status()).toBe(400);
  }

  await signIn(page, "pager", `${invited.one_time_password}-own`);
  await page.goto("/audit");
  await hydrated(page);
  await page.getByTestId("audit-filter").fill("api_token.");
  await page.getByTestId("audit-filter").press("Enter");
  const rows = page.getByTestId("audit-row");
  await expect(rows).toHaveCount(100);
  await expect(page.getByTestId("audit-page")).toHaveText("Page 1");
  await expect(page.getByTestId("audit-newer")).toBeDisabled();
  await expect(rows.first()).toContainText("t104");
  await page.getByTestId("audit-older").click();
  await expect(page.getByTestId("audit-page")).toHaveText("Page 2");
  await expect(rows).toHaveCount(5);
  await expect(rows.last()).toContainText("t0");
  await expect(page.getByTestId("audit-older")).toBeDisabled();
  await page.getByTestId("audit-newer").click();
  await expect(page.getByTestId("audit-page")).toHaveText("Page 1");
  await expect(rows).toHaveCount(100);
});
