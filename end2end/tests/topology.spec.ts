// The admin topology pictures: a 1-GPU VM launched from the dashboard shows up on its host's
// picture as a GPU tile of the tenant with the instance's name, over its paired NIC, in an
// active single-GPU partition, with CPUs and hugepages in use on that GPU's NUMA node; the
// scalable unit shows its 8 rail leaves over its host cards, which link to the host pictures;
// its tenant fabric shows a tenant's VRF confirmed on every leaf while the tenant has a VM in
// the unit, and drops it live when the VM goes.
import { expect, test, type Page } from "@playwright/test";
import { adminPassword, call, invite, session } from "./api";
import { hydrated } from "./hydrated";

const password = process.env.PORTAL_ADMIN_PASSWORD!;

async function signIn(page: Page) {
  await page.goto("/login");
  await page.getByTestId("login-username").fill("admin");
  await page.getByTestId("login-password").fill(password);
  await page.getByTestId("login-submit").click();
  await expect(page.getByTestId("whoami")).toContainText("admin");
}

test("a launched VM on its host's topology picture and the scalable unit's rail leaves", async ({ page }, testInfo) => {
  const consoleErrors: string[] = [];
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  page.on("pageerror", (e) => consoleErrors.push(e.message));
  await signIn(page);

  await page.getByTestId("launch-name").fill("e2e-topo-1");
  await page.getByTestId("launch-type").selectOption("h100x1");
  await page.getByTestId("launch-submit").click();
  const row = page.locator('[data-testid="instance-row"][data-name="e2e-topo-1"]');
  await expect(row.getByTestId("instance-state")).toHaveText("running", { timeout: 15_000 });
  const host = (await row.locator("td:nth-child(6)").textContent())!.trim();
  expect(host).toMatch(/^su\d+-h\d+$/);
  const unit = host.split("-")[0];

  // The admin page's fleet map links each host card to its picture.
  await page.getByTestId("nav-admin").click();
  await hydrated(page);
  await page.locator(`[data-testid="host-card"][href="/admin/hosts/${host}"]`).click();
  await expect(page).toHaveURL(new RegExp(`/admin/hosts/${host}$`));
  const picture = page.getByTestId("host-topology");
  await expect(picture).toHaveAttribute("data-host", host);
  await expect(page.getByTestId("numa-node")).toHaveCount(2);
  await expect(page.getByTestId("gpu-tile")).toHaveCount(8);
  await expect(page.getByTestId("nic-tile")).toHaveCount(8);
  const used = page.locator('[data-testid="gpu-tile"][data-state="used"]');
  await expect(used).toHaveCount(1);
  await expect(used.getByTestId("gpu-instance")).toHaveText("e2e-topo-1");
  await expect(used.getByTestId("gpu-tenant")).toHaveText("default");
  // Its paired NIC (the tile below it in the same lane) is held too.
  await expect(used.locator("xpath=..").locator(".nic-tile.held")).toHaveCount(1);
  await expect(page.locator('[data-testid="partition"][data-state="active"]')).toHaveCount(1);
  await expect(page.locator('[data-testid="partition"][data-state="active"]')).toContainText("e2e-topo-1");
  // The GPU's NUMA node pins the VM's 20 vCPUs and its emulator thread, and 200 GiB of hugepages.
  const node = page.getByTestId("numa-node").filter({ has: used });
  await expect(node.getByTestId("cpu-meter")).toHaveAttribute("data-used", "21");
  await expect(node.getByTestId("hugepage-meter")).toHaveAttribute("data-used", "200");
  await expect(page.getByTestId("topology-launchable")).toContainText("0×8, 1×4, 1×2, 1×1");
  await expect(page.getByTestId("host-instance")).toContainText("e2e-topo-1");
  await page.screenshot({ path: testInfo.outputPath("topology.png"), fullPage: true });
  await page.screenshot({ path: "test-results/topology.png", fullPage: true });

  // Up to the unit through the breadcrumb: 8 rail leaves, 32 host cards, ours with 1 GPU used.
  await page.locator(".crumbs a", { hasText: unit }).click();
  await expect(page).toHaveURL(new RegExp(`/admin/su/${unit}$`));
  await expect(page.getByTestId("leaf")).toHaveCount(8);
  await expect(page.getByTestId("su-host-card")).toHaveCount(32);
  const card = page.locator(`[data-testid="su-host-card"][data-host="${host}"]`);
  await expect(card).toContainText("7 free · 1 used");
  await page.screenshot({ path: "test-results/topology-su.png", fullPage: true });
  // And back down through the host card's link.
  await card.click();
  await expect(page).toHaveURL(new RegExp(`/admin/hosts/${host}$`));
  await expect(page.locator('[data-testid="gpu-tile"][data-state="used"]')).toHaveCount(1);
  await page.getByTestId("topology-refresh").click();
  await expect(page.locator('[data-testid="gpu-tile"][data-state="used"]')).toHaveCount(1);

  await page.goto("/admin/su/su1");
  await expect(page.getByTestId("leaf")).toHaveCount(8);
  for (let rail = 0; rail < 8; rail++) {
    await expect(page.locator(`[data-testid="leaf"][data-rail="${rail}"]`)).toContainText(`su1-leaf${rail}`);
  }

  // Unknown names are answered with a sentence.
  await page.goto("/admin/hosts/su9-h99");
  await expect(page.getByTestId("topology-error")).toHaveText("No host named su9-h99 exists.");
  await page.goto("/admin/su/rack7");
  await expect(page.getByTestId("topology-error")).toHaveText("No scalable unit named rack7 exists.");

  // The picture follows the fleet live: deleting the VM through the API (as a script
  // would) frees its GPU on the open page without a click.
  await page.goto(`/admin/hosts/${host}`);
  await expect(page.locator('[data-testid="gpu-tile"][data-state="used"]')).toHaveCount(1);
  await hydrated(page);
  const listed = await (await page.request.post("/api/fn/instance_list", { form: {} })).json();
  const id = listed.find((i: { name: string }) => i.name === "e2e-topo-1").id;
  const deleted = await page.request.post("/api/fn/instance_delete", { form: { id } });
  expect(deleted.status()).toBe(200);
  await expect(page.locator('[data-testid="gpu-tile"][data-state="used"]')).toHaveCount(0, { timeout: 15_000 });
  await expect(page.getByTestId("topology-launchable")).toContainText("1×8");

  // The two 404 pages above are the only failed loads.
  expect(consoleErrors.filter((e) => !/status of 404/.test(e))).toEqual([]);
});

interface Instance { id: string; state: string; host_name: string | null }

test("the scalable unit's tenant fabric: a tenant's VRF confirmed on every leaf, gone with its VM", async ({ page }, testInfo) => {
  test.setTimeout(120_000);
  const consoleErrors: string[] = [];
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  page.on("pageerror", (e) => consoleErrors.push(e.message));

  // A VM of a tenant of its own, launched by one of its members.
  const admin = await session("admin", adminPassword);
  const tenant = await call<{ id: string }>(admin, "tenant_create", { name: "fabco" });
  const invited = await invite(admin, tenant.id, "fab-member", "member");
  const member = await session("fab-member", invited.one_time_password);
  const made = await call<{ id: string }[]>(member, "instance_create", {
    "create[name]": "e2e-fabric-1", "create[instance_type]": "h100x1",
  });
  const id = made[0].id;
  let host = "";
  await expect
    .poll(async () => {
      const got = await call<{ instance: Instance }>(member, "instance_get", { id });
      host = got.instance.host_name ?? "";
      return got.instance.state;
    }, { timeout: 20_000 })
    .toBe("Running");
  const unit = host.split("-")[0];
  expect(unit).toMatch(/^su\d+$/);

  // From the unit's picture to its fabric.
  await signIn(page);
  await page.goto(`/admin/su/${unit}`);
  await page.getByTestId("su-fabric-link").click();
  await expect(page).toHaveURL(new RegExp(`/admin/su/${unit}/fabric$`));
  await hydrated(page);
  const leaves = page.getByTestId("fabric-leaf");
  await expect(leaves).toHaveCount(8);
  // Every leaf holds the tenant's VPC VRF, and the leaf of the GPU's rail its GPU fabric too,
  // all confirmed (the page reads again every few seconds).
  const ours = page.locator('[data-testid="fabric-vrf"][data-tenant="fabco"]');
  const vpcRows = ours.filter({ hasNotText: "GPU fabric" });
  await expect(vpcRows).toHaveCount(8);
  await expect(ours.filter({ hasText: "GPU fabric" })).toHaveCount(1);
  await expect(page.locator('[data-testid="fabric-vrf"][data-tenant="fabco"][data-state="confirmed"]')).toHaveCount(9, { timeout: 20_000 });
  const leaf0 = page.locator(`[data-testid="fabric-leaf"][data-leaf="${unit}-leaf0"]`);
  await expect(leaf0.getByTestId("fabric-leaf-agent")).toHaveText("switch agent connected");
  const row = leaf0.locator('[data-testid="fabric-vrf"][data-tenant="fabco"]').filter({ hasNotText: "GPU fabric" });
  await expect(row).toContainText("default");
  await expect(row).toContainText(/vpc\d+ · \d+/);
  await expect(page.getByTestId("fabric-dpu")).toHaveCount(64);
  await expect(page.getByTestId("fabric-dpu-summary")).toContainText("64 of 64 DPUs reachable");
  await page.screenshot({ path: testInfo.outputPath("fabric.png"), fullPage: true });
  await page.screenshot({ path: "test-results/topology-fabric.png", fullPage: true });

  // The REST API gives the same picture to the provider admin, not to the tenant's member.
  const rest = await page.request.get(`/api/v1/admin/scalable-units/${unit}/fabric`);
  expect(rest.status()).toBe(200);
  const body = await rest.json();
  expect(body.leaves).toHaveLength(8);
  expect(body.leaves[0].vrfs.some((v: { tenant_name: string; state: string }) => v.tenant_name === "fabco" && v.state === "confirmed")).toBe(true);
  expect((await member.get(`/api/v1/admin/scalable-units/${unit}/fabric`)).status()).toBe(403);
  const typo = await page.request.get("/api/v1/admin/scalable-units/rack7/fabric");
  expect(typo.status()).toBe(404);
  expect((await typo.json()).message).toBe("No scalable unit named rack7 exists.");

  // The VM goes: its tenant's VRF leaves every leaf on the open page, without a click.
  await call(member, "instance_delete", { id });
  await expect(ours).toHaveCount(0, { timeout: 30_000 });

  // A unit that does not exist is one sentence.
  await page.goto("/admin/su/rack7/fabric");
  await expect(page.getByTestId("topology-error")).toHaveText("No scalable unit named rack7 exists.");
  await page.goto("/admin/su/su99/fabric");
  await expect(page.getByTestId("topology-error")).toHaveText("No scalable unit named su99 exists.");
  expect(consoleErrors.filter((e) => !/status of 404/.test(e))).toEqual([]);
});

test("anonymous visitors are sent to sign in and the API refuses them", async ({ page, request }) => {
  await page.goto("/admin/hosts/su1-h01");
  await expect(page).toHaveURL(/\/login$/);
  await page.goto("/admin/su/su1");
  await expect(page).toHaveURL(/\/login$/);
  await page.goto("/admin/su/su1/fabric");
  await expect(page).toHaveURL(/\/login$/);
  const fabric = await request.post("/api/fn/scalable_unit_fabric", { form: { su: "su1" } });
  expect(fabric.status()).toBe(401);
  const host = await request.post("/api/fn/host_topology", { form: { name: "su1-h01" } });
  expect(host.status()).toBe(401);
  const unit = await request.post("/api/fn/scalable_unit_topology", { form: { su: "su1" } });
  expect(unit.status()).toBe(401);
});
