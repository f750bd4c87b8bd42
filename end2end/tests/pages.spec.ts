// Every page as provider admin, tenant admin and member in Chromium: it hydrates with zero
// console errors (hydration panics included), and every page has the one top bar.
import { Browser, expect, test } from "@playwright/test";
import { adminPassword, call, invite, session } from "./api";
import { hydrated } from "./hydrated";

const PAGES = ["/", "/account", "/keys", "/networking", "/networking/public-ips", "/admin", "/admin/public-ip-pools", "/admin/identity", "/admin/tenants", "/users", "/audit", "/admin/hosts/su1-h02", "/admin/su/su1", "/admin/su/su1/fabric",
  "/usage", `/usage/invoices/${new Date().toISOString().slice(0, 7)}`, "/admin/usage", "/admin/prices"];

async function signedInPage(browser: Browser, username: string, password: string) {
  const context = await browser.newContext();
  const r = await context.request.post("/api/fn/login", { form: { username, password } });
  expect(r.status(), `sign-in of ${username}`).toBe(200);
  return context.newPage();
}

test("every page hydrates without console errors and shows the top bar, for every role", async ({ browser }) => {
  test.setTimeout(180_000);
  const admin = await session("admin", adminPassword);
  const me = await call<{ tenant_id: string }>(admin, "get_me", {});
  const users: Record<string, string> = {};
  for (const [username, role] of [["pages-admin", "tenant-admin"], ["pages-member", "member"]]) {
    const invited = await invite(admin, me.tenant_id, username, role);
    await session(username, invited.one_time_password); // chooses `${otp}-own`
    users[username] = `${invited.one_time_password}-own`;
  }
  const roles: [string, string][] = [["admin", adminPassword], ...Object.entries(users)];
  // An instance of the tenant for its page, which every role of the tenant sees.
  const made = await call<{ id: string }[]>(admin, "instance_create", {
    "create[name]": "pages-vm", "create[instance_type]": "c8m32",
  });
  const pages = [...PAGES, `/instances/${made[0].id}`];

  const errors: string[] = [];
  for (const [username, password] of roles) {
    const page = await signedInPage(browser, username, password);
    let current = "";
    page.on("console", (m) => m.type() === "error" && errors.push(`${username} ${current}: ${m.text()}`));
    page.on("pageerror", (e) => errors.push(`${username} ${current}: ${e.message}`));
    for (const path of pages) {
      current = path;
      await page.goto(path);
      await hydrated(page);
      await expect(page.locator("header.topbar"), `top bar on ${path} as ${username}`).toHaveCount(1);
      await expect(page.getByTestId("whoami")).toContainText(username);
      await expect(page.getByTestId("nav-account")).toBeVisible();
      // Let the hydrated page make its first calls (and fail, if it would).
      await page.waitForTimeout(300);
    }
    await page.context().close();
  }
  await call(admin, "instance_delete", { id: made[0].id });
  expect(errors).toEqual([]);
});
