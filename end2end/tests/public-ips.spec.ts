// Public IPs: the provider admin adds a pool on /admin/public-ip-pools (a bad network is
// explained as it is typed and never sent; a second pool of the same name is refused with
// the server's sentence); a member of a new tenant takes an address from it on Networking ›
// Public IPs (a duplicate name refused the same way), attaches it to a VM on the simulated
// fleet and sees it go from attaching to attached, then on the instance page beside the
// port's address and in the SSH command, and as a line of the month's invoice; a viewer of the tenant sees the list and no form or
// button; the member detaches and (after confirming) releases it, and the admin deletes the
// pool.
import { Browser, expect, Page, test } from "@playwright/test";
import { adminPassword, base, call, invite, session } from "./api";
import { hydrated } from "./hydrated";

type Ctx = Awaited<ReturnType<typeof session>>;

/// A browser page signed in as the API context's user; its page errors go to `errors`.
async function pageAs(browser: Browser, ctx: Ctx, errors: string[]): Promise<Page> {
  const context = await browser.newContext({ baseURL: base, storageState: await ctx.storageState() });
  const page = await context.newPage();
  page.on("pageerror", (e) => errors.push(e.message));
  return page;
}

test("a pool, an address taken, attached, shown on the instance, detached and released", async ({ browser }) => {
  test.setTimeout(150_000);
  const errors: string[] = [];
  const admin = await session("admin", adminPassword);
  const tenant = await call<{ id: string }>(admin, "tenant_create", { name: "ipco" });
  const m = await invite(admin, tenant.id, "ip-member", "member");
  const v = await invite(admin, tenant.id, "ip-viewer", "viewer");
  const member = await session("ip-member", m.one_time_password);
  const viewer = await session("ip-viewer", v.one_time_password);
  const sentPools: string[] = [];

  // The provider admin's pool: checked as it is typed, sent only when valid.
  const ap = await pageAs(browser, admin, errors);
  ap.on("request", (r) => r.url().includes("/api/fn/public_ip_pool_create") && sentPools.push(r.postData() ?? ""));
  await ap.goto("/admin");
  await hydrated(ap);
  await ap.getByTestId("nav-ip-pools").click();
  await expect(ap).toHaveURL(/\/admin\/public-ip-pools$/);
  await hydrated(ap);
  const poolForm = ap.getByTestId("pool-form");
  await poolForm.getByTestId("pool-name").fill("e2e-pool");
  await poolForm.getByTestId("pool-cidr-input").fill("198.51.100.0/31");
  await expect(ap.getByTestId("pool-error")).toContainText("A pool is a /16 to a /30");
  await expect(poolForm.getByTestId("pool-add")).toBeDisabled();
  await poolForm.getByTestId("pool-cidr-input").fill("198.51.100.5/29");
  await expect(ap.getByTestId("pool-error")).toContainText("host bits set");
  await poolForm.getByTestId("pool-cidr-input").fill("not-a-network");
  await expect(ap.getByTestId("pool-error")).toContainText("is not an IPv4 network");
  await poolForm.getByTestId("pool-cidr-input").fill("198.51.100.0/29");
  await expect(ap.getByTestId("pool-error")).toHaveCount(0);
  await poolForm.getByTestId("pool-add").click();
  const poolRow = ap.locator('[data-testid="pool-row"][data-name="e2e-pool"]');
  await expect(poolRow.getByTestId("pool-cidr")).toHaveText("198.51.100.0/29");
  await expect(poolRow.getByTestId("pool-size")).toHaveText("6");
  await expect(poolRow.getByTestId("pool-held")).toHaveText("0");
  await expect(poolForm.getByTestId("pool-name")).toHaveValue("");
  expect(sentPools.filter((b) => !b.includes("198.51.100.0%2F29"))).toEqual([]);
  // The same name again: the server's one sentence, next to the form.
  await poolForm.getByTestId("pool-name").fill("e2e-pool");
  await poolForm.getByTestId("pool-cidr-input").fill("198.51.100.8/29");
  await poolForm.getByTestId("pool-add").click();
  await expect(ap.getByTestId("pool-error")).toHaveText('There is already a pool named "e2e-pool"; pick another.');
  await expect(poolRow).toHaveCount(1);

  // The member's VM on the simulated fleet.
  const [vm] = await call<{ id: string }[]>(member, "instance_create", {
    "create[name]": "ip-vm", "create[instance_type]": "c8m32",
  });
  await expect
    .poll(async () => (await call<{ instance: { state: string } }>(member, "instance_get", { id: vm.id })).instance.state, { timeout: 20_000 })
    .toBe("Running");

  // The member takes an address from the pool on Networking › Public IPs.
  const mp = await pageAs(browser, member, errors);
  await mp.goto("/networking");
  await hydrated(mp);
  await mp.getByTestId("tab-public-ips").click();
  await expect(mp).toHaveURL(/\/networking\/public-ips$/);
  await hydrated(mp);
  await expect(mp.getByTestId("no-public-ips")).toBeVisible();
  const allocate = mp.getByTestId("allocate-form");
  await expect(allocate.getByTestId("allocate-pool")).toHaveValue(""); // any pool
  await allocate.getByTestId("allocate-name").fill("Web");
  await expect(mp.getByTestId("allocate-error")).toContainText("Name the public IP");
  await expect(allocate.getByTestId("allocate-add")).toBeDisabled();
  await allocate.getByTestId("allocate-name").fill("web");
  await expect(mp.getByTestId("allocate-error")).toHaveCount(0);
  await allocate.getByTestId("allocate-pool").selectOption({ label: "e2e-pool · 198.51.100.0/29 (6 free)" });
  await allocate.getByTestId("allocate-add").click();
  const row = mp.locator('[data-testid="public-ip-row"][data-name="web"]');
  await expect(row.getByTestId("public-ip-address")).toHaveText("198.51.100.1");
  await expect(row.getByTestId("public-ip-state")).toHaveText("free");
  await expect(row).toContainText("e2e-pool");
  await expect(allocate.getByTestId("allocate-pool").locator("option", { hasText: "e2e-pool" })).toHaveText("e2e-pool · 198.51.100.0/29 (5 free)");
  // A second address of the same name: refused with the server's sentence.
  await allocate.getByTestId("allocate-name").fill("web");
  await allocate.getByTestId("allocate-add").click();
  await expect(mp.getByTestId("allocate-error")).toHaveText('You already have a public IP named "web"; pick another name.');
  await expect(mp.getByTestId("public-ip-row")).toHaveCount(1);

  // Attached to the VM: attaching until its DPU has the mapping, then attached.
  await row.getByTestId("attach-instance").selectOption({ label: "ip-vm" });
  await row.getByTestId("public-ip-attach").click();
  await expect(row.getByTestId("public-ip-state")).toHaveText(/attaching|attached/);
  await expect(row.getByTestId("public-ip-state")).toHaveText("attached", { timeout: 20_000 });
  await expect(row.getByTestId("public-ip-instance-link")).toHaveText("ip-vm");
  const privateIp = (await row.getByTestId("public-ip-private").textContent())!;
  expect(privateIp).toMatch(/^10\.0\.\d+\.\d+$/);

  // A viewer of the tenant sees the list, and no form or button.
  const vp = await pageAs(browser, viewer, errors);
  await vp.goto("/networking/public-ips");
  await hydrated(vp);
  const seen = vp.locator('[data-testid="public-ip-row"][data-name="web"]');
  await expect(seen.getByTestId("public-ip-address")).toHaveText("198.51.100.1");
  await expect(seen.getByTestId("public-ip-state")).toHaveText("attached");
  await expect(vp.getByTestId("allocate-form")).toHaveCount(0);
  await expect(vp.getByTestId("public-ip-detach")).toHaveCount(0);
  await expect(vp.getByTestId("public-ip-release")).toHaveCount(0);
  await expect(vp.getByTestId("attach-form")).toHaveCount(0);
  await vp.context().close();

  // On the instance page: beside the port's address, and in the SSH command.
  await row.getByTestId("public-ip-instance-link").click();
  await expect(mp).toHaveURL(new RegExp(`/instances/${vm.id}$`));
  await hydrated(mp);
  await expect(mp.getByTestId("port-ip")).toHaveText(privateIp);
  await expect(mp.getByTestId("port-public-ip")).toHaveText("198.51.100.1");
  await expect(mp.getByTestId("instance-ssh")).toContainText(/ssh [a-z]+@198\.51\.100\.1/);

  // Billed by the hour while attached: a line of its own on the month's invoice.
  const month = new Date().toISOString().slice(0, 7);
  const ipLine = mp.locator('[data-testid="invoice-line"][data-name="ip-vm"][data-item="public IP"]');
  await expect(async () => {
    await mp.goto(`/usage/invoices/${month}`);
    await expect(ipLine).toHaveCount(1, { timeout: 1_000 });
  }).toPass({ timeout: 15_000 });
  await expect(ipLine.getByTestId("line-quantity")).toHaveText("1");

  // Detached: free again, and the instance is back to its private address.
  await mp.goto("/networking/public-ips");
  await hydrated(mp);
  await row.getByTestId("public-ip-detach").click();
  await expect(row.getByTestId("public-ip-state")).toHaveText("free");
  await expect(row.getByTestId("public-ip-instance")).toHaveText("—");
  // An address in use by nothing goes back only once confirmed.
  await row.getByTestId("public-ip-release").click();
  const confirm = mp.getByTestId("release-confirm");
  await expect(confirm).toContainText("Release 198.51.100.1 (web)?");
  await confirm.getByTestId("release-cancel").click();
  await expect(confirm).toHaveCount(0);
  await expect(row).toHaveCount(1);
  await row.getByTestId("public-ip-release").click();
  await confirm.getByTestId("release-yes").click();
  await expect(mp.getByTestId("no-public-ips")).toBeVisible();
  await expect(confirm).toHaveCount(0);
  const detail = await call<{ ssh_command: string | null; ports: { public_ip: string | null }[] }>(member, "instance_get", { id: vm.id });
  expect(detail.ports[0].public_ip).toBeNull();
  expect(detail.ssh_command).toContain(`@${privateIp}`);

  // No one holds its addresses any more: the pool goes.
  await ap.reload();
  await hydrated(ap);
  await expect(poolRow.getByTestId("pool-held")).toHaveText("0");
  await poolRow.getByTestId("pool-delete").click();
  await expect(poolRow).toHaveCount(0);
  await expect(ap.getByTestId("pool-delete-error")).toHaveCount(0);

  await call(member, "instance_delete", { id: vm.id });
  await expect
    .poll(async () => (await call<{ name: string }[]>(member, "instance_list", {})).filter((i) => i.name === "ip-vm").length, { timeout: 20_000 })
    .toBe(0);
  expect(errors).toEqual([]);
});
