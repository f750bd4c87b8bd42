// Metering and billing through the browser: a VM launched from the dashboard, run a few
// seconds and stopped, shows on /usage and as a line of this month's invoice whose amount is
// quantity × seconds × price / 3600 rounded half up to the cent (on the page and in the CSV);
// a budget reached raises the dashboard's banner. A tenant admin's bad budget is refused with
// the server's sentence; members see no budget form. The provider's pages load, a price in
// the past is refused, a future one is listed as such, credit given on the tenants page shows
// on the tenant's usage, and the invoice prints without the portal around it.
import { Browser, Page, expect, test } from "@playwright/test";
import { adminPassword, call, invite, session } from "./api";
import { hydrated } from "./hydrated";

const month = () => new Date().toISOString().slice(0, 7);
/// A price high enough that a few seconds cost whole cents (1,234.567891 per hour).
const PRICE = "1234.567891";

async function signedInPage(browser: Browser, username: string, password: string): Promise<Page> {
  const context = await browser.newContext();
  const r = await context.request.post("/api/fn/login", { form: { username, password } });
  expect(r.status(), `sign-in of ${username}`).toBe(200);
  const page = await context.newPage();
  return page;
}

/// `1,234.567891 USD/h` → 1234567891 (micros): the English figures the test browser reads.
function micros(text: string): bigint {
  const n = text.trim().split(" ")[0].replace(/,/g, "");
  const [whole, fraction = ""] = n.split(".");
  return BigInt(whole) * 1_000_000n + BigInt(fraction.padEnd(6, "0"));
}

/// `1,234.56 USD` → 123456 (cents).
function cents(text: string): bigint {
  const n = text.trim().split(" ")[0].replace(/,/g, "");
  const [whole, fraction = "00"] = n.split(".");
  return BigInt(whole) * 100n + BigInt(fraction);
}

/// quantity × seconds × price per hour / 3600 in cents, rounded half up.
function amount(quantity: bigint, seconds: bigint, priceMicros: bigint): bigint {
  const num = quantity * seconds * priceMicros;
  const den = 3600n * 10_000n;
  return (2n * num + den) / (2n * den);
}

test("a VM run for seconds is metered, invoiced to the cent and can trip the budget", async ({ browser }) => {
  test.setTimeout(150_000);
  const admin = await session("admin", adminPassword);
  await call(admin, "price_set", { "set[item]": "type:c1m1", "set[price]": PRICE, "set[effective_from]": "" });
  const page = await signedInPage(browser, "admin", adminPassword);
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto("/");
  await hydrated(page);
  await page.getByTestId("launch-name").fill("metered-vm");
  await page.getByTestId("launch-type").selectOption("c1m1");
  await page.getByTestId("launch-submit").click();
  const row = page.locator('[data-testid="instance-row"][data-name="metered-vm"]');
  await expect(row.getByTestId("instance-state")).toHaveText("running", { timeout: 30_000 });
  await page.waitForTimeout(3_000);
  await row.locator('[data-testid="instance-power"][data-action="stop"]').click();
  await expect(row.getByTestId("instance-state")).toHaveText("stopped", { timeout: 30_000 });

  // The usage page: the instance in the per-instance breakdown, with its time.
  await page.getByTestId("nav-usage").click();
  await expect(page).toHaveURL(/\/usage$/);
  await hydrated(page);
  await expect(page.getByTestId("usage-title")).toContainText(month());
  const used = page.locator('[data-testid="by-instance"] [data-testid="cost-row"][data-name="metered-vm"]');
  await expect(used).toHaveCount(1);
  expect(Number(await used.getAttribute("data-seconds"))).toBeGreaterThan(0);
  expect(Number((await used.getByTestId("cost-seconds").textContent())!.replace(/,/g, ""))).toBeGreaterThan(0);
  expect(cents((await page.getByTestId("usage-total").textContent())!)).toBeGreaterThan(0n);
  await expect(page.getByTestId("usage-forecast")).toBeVisible();
  const chart = page.locator('[data-testid="bar-chart"]');
  await expect(chart).toHaveAttribute("role", "img");
  await expect(chart).toHaveAttribute("aria-label", /Cost per day/);
  await expect(chart.locator("rect title").first()).toHaveText(new RegExp(`^${month()}-\\d\\d: `));

  // This month's invoice, from the list: the line's amount from its own figures.
  await page.locator(`[data-testid="invoice-link"][data-month="${month()}"]`).click();
  await expect(page).toHaveURL(new RegExp(`/usage/invoices/${month()}$`));
  await hydrated(page);
  await expect(page.getByTestId("invoice-draft")).toBeVisible();
  const line = page.locator('[data-testid="invoice-line"][data-name="metered-vm"][data-item="c1m1"]');
  await expect(line).toHaveCount(1);
  const quantity = BigInt((await line.getByTestId("line-quantity").textContent())!.trim());
  const seconds = BigInt((await line.getByTestId("line-seconds").textContent())!.replace(/,/g, "").trim());
  const price = micros((await line.getByTestId("line-price").textContent())!);
  expect(seconds).toBeGreaterThanOrEqual(2n);
  expect(price).toBe(1_234_567_891n);
  expect(cents((await line.getByTestId("line-amount").textContent())!)).toBe(amount(quantity, seconds, price));

  // The same line in the CSV download, with the page's cookies.
  await expect(page.getByTestId("invoice-csv")).toHaveAttribute("href", `/usage/invoices/${month()}/csv`);
  const csv = await page.request.get(`/usage/invoices/${month()}/csv`);
  expect(csv.status()).toBe(200);
  expect(csv.headers()["content-type"]).toContain("text/csv");
  const rows = (await csv.text()).trim().split("\n");
  expect(rows[1]).toBe("instance,instance_id,item,quantity,from,to,seconds,price_per_hour,amount");
  const fields = rows.map((r) => r.split(",")).find((f) => f[0] === "metered-vm" && f[2] === "c1m1")!;
  expect(fields).toBeTruthy();
  const [csvSeconds, csvPrice, csvAmount] = [BigInt(fields[6]), micros(fields[7]), cents(fields[8])];
  expect(csvSeconds).toBe(seconds);
  expect(csvAmount).toBe(amount(BigInt(fields[3]), csvSeconds, csvPrice));

  // Printed, the invoice is the document alone.
  await page.emulateMedia({ media: "print" });
  await expect(page.locator("header.topbar")).toBeHidden();
  await expect(page.getByTestId("invoice-print")).toBeHidden();
  await expect(page.getByTestId("invoice-lines")).toBeVisible();
  await page.emulateMedia({ media: "screen" });
  await expect(page.locator("header.topbar")).toBeVisible();

  // A budget the month has already used up: the open dashboard says so, live.
  await page.goto("/");
  await hydrated(page);
  await expect(page.getByTestId("live-indicator")).toHaveText("● live", { timeout: 10_000 });
  await call(admin, "budget_set", { "set[monthly]": "0.01" });
  await call(admin, "usage_summary", {}); // checks the budget's alerts at once
  const banner = page.getByTestId("budget-alert");
  await expect(banner).toContainText("Your spending reached 100 % of this month's budget", { timeout: 15_000 });
  await expect(banner.getByRole("link")).toHaveAttribute("href", "/usage");
  await banner.getByTestId("budget-alert-dismiss").click();
  await expect(banner).toHaveCount(0);
  await call(admin, "budget_set", { "set[monthly]": "" });

  // Leave the fleet and the price as they were.
  await row.getByTestId("instance-delete").click();
  await expect(row).toHaveCount(0, { timeout: 30_000 });
  await call(admin, "price_set", { "set[item]": "type:c1m1", "set[price]": "0.03", "set[effective_from]": "" });
  expect(errors).toEqual([]);
});

test("a tenant admin sets the budget (a bad one is refused); a member sees it without the form", async ({ browser }) => {
  const admin = await session("admin", adminPassword);
  const me = await call<{ tenant_id: string }>(admin, "get_me", {});
  const users: Record<string, string> = {};
  for (const [username, role] of [["usage-admin", "tenant-admin"], ["usage-member", "member"]]) {
    const invited = await invite(admin, me.tenant_id, username, role);
    await session(username, invited.one_time_password); // chooses `${otp}-own`
    users[username] = `${invited.one_time_password}-own`;
  }
  const page = await signedInPage(browser, "usage-admin", users["usage-admin"]);
  await page.goto("/usage");
  await hydrated(page);
  const form = page.getByTestId("budget-form");
  await form.getByTestId("budget-input").fill("lots");
  await form.getByTestId("budget-submit").click();
  await expect(page.getByTestId("budget-error")).toContainText('Write the monthly budget as a number with at most 6 decimals, such as 2.49; "lots" is not one.');
  await page.getByTestId("budget-input").fill("1500.00");
  await page.getByTestId("budget-submit").click();
  await expect(page.getByTestId("budget-status")).toContainText("1,500.00 USD");
  await expect(page.getByTestId("budget-error")).toHaveCount(0);
  await expect(page.getByTestId("budget-used")).toContainText("% used");

  // A member reads the budget and gets no form.
  const member = await signedInPage(browser, "usage-member", users["usage-member"]);
  await member.goto("/usage");
  await hydrated(member);
  await expect(member.getByTestId("budget-status")).toContainText("1,500.00 USD");
  await expect(member.getByTestId("budget-form")).toHaveCount(0);
  // The server refuses a member all the same.
  const refused = await member.request.post("/api/fn/budget_set", { form: { "set[monthly]": "" } });
  expect(refused.status()).toBe(403);
  await call(admin, "budget_set", { "set[monthly]": "" });
});

test("the provider's usage and price pages: a past price is refused, a future one listed", async ({ browser }) => {
  const page = await signedInPage(browser, "admin", adminPassword);
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto("/");
  await hydrated(page);
  await page.getByTestId("nav-usage-all").click();
  await expect(page).toHaveURL(/\/admin\/usage$/);
  await hydrated(page);
  await expect(page.getByTestId("provider-usage-title")).toContainText(month());
  await expect(page.getByTestId("provider-total")).toContainText(/\d/);
  await expect(page.getByTestId("gpu-model-table")).toBeVisible();
  await expect(page.locator('[data-testid="bar-chart"][role="img"]')).toBeVisible();
  await expect(page.getByTestId("month-picker").locator("a.active")).toHaveText(month());
  await expect(page.getByTestId("provider-csv")).toHaveAttribute("href", `/admin/usage/${month()}/csv`);
  const csv = await page.request.get(`/admin/usage/${month()}/csv`);
  expect(csv.status()).toBe(200);
  expect((await csv.text()).split("\n")[0]).toContain("tenant,instance,instance_id,item");

  await page.getByTestId("nav-prices").click();
  await expect(page).toHaveURL(/\/admin\/prices$/);
  await hydrated(page);
  const c1 = page.locator('[data-testid="price-row"][data-item="type:c1m1"]');
  await expect(c1.locator('[data-testid="price-version"][data-current="true"]')).toHaveCount(1);
  const ip = page.locator('[data-testid="price-row"][data-item="extra:public-ip"]');
  await expect(ip).toContainText("per hour attached");
  await expect(ip.locator('[data-testid="price-version"][data-current="true"]')).toContainText("0.005 USD/h");
  const form = page.getByTestId("price-form");
  await form.getByTestId("price-item").selectOption("type:c1m1");
  await form.getByTestId("price-amount").fill("0.05");
  await form.getByTestId("price-from").fill("2020-01-01T00:00");
  await form.getByTestId("price-submit").click();
  await expect(page.getByTestId("price-error")).toContainText("A new price starts now or later: what was billed before stays as it was.");

  await form.getByTestId("price-item").selectOption("type:c1m1");
  await form.getByTestId("price-amount").fill("0.04");
  await form.getByTestId("price-from").fill("2099-01-01T00:00");
  await form.getByTestId("price-submit").click();
  await expect(page.getByTestId("price-saved")).toBeVisible();
  const future = c1.locator('[data-testid="price-version"][data-future="true"]');
  await expect(future).toContainText("0.04 USD/h");
  await expect(future).toContainText("from 2099-01-01 00:00 UTC");
  expect(errors).toEqual([]);
});

test("credit given on the tenants page shows as prepaid credit on the tenant's usage", async ({ browser }) => {
  const admin = await session("admin", adminPassword);
  const tenant = await call<{ id: string }>(admin, "tenant_create", { name: "creditco" });
  const invited = await invite(admin, tenant.id, "credit-viewer", "viewer");
  await session("credit-viewer", invited.one_time_password);
  const page = await signedInPage(browser, "admin", adminPassword);
  await page.goto("/admin/tenants");
  await hydrated(page);
  const row = page.locator('[data-testid="tenant-row"][data-name="creditco"]');
  await row.getByTestId("credit-amount").fill("lots");
  await row.getByTestId("credit-submit").click();
  await expect(page.getByTestId("tenancy-error")).toContainText('"lots" is not one');
  await row.getByTestId("credit-amount").fill("500.00");
  await row.getByTestId("credit-note").fill("welcome");
  await row.getByTestId("credit-submit").click();
  await expect(page.getByTestId("credit-done")).toBeVisible();

  const viewer = await signedInPage(browser, "credit-viewer", `${invited.one_time_password}-own`);
  await viewer.goto("/usage");
  await hydrated(viewer);
  await expect(viewer.getByTestId("usage-credit")).toHaveText("500.00 USD");
  await expect(viewer.getByTestId("budget-form")).toHaveCount(0);
  // The viewer downloads their invoice; the provider's CSV is not theirs.
  expect((await viewer.request.get(`/usage/invoices/${month()}/csv`)).status()).toBe(200);
  expect((await viewer.request.get(`/admin/usage/${month()}/csv`)).status()).toBe(403);
});
