// Networking on /networking, as a member of a new tenant: the default VPC, subnet and group
// are there; a subnet and a rule are checked as they are typed (nothing is sent until they
// are valid); a VM launched from the dashboard into the new subnet and group shows its
// address, groups and SSH command on its page; the subnet cannot go while the VM holds an
// address in it, and can once the VM is deleted.
import { expect, test } from "@playwright/test";
import { adminPassword, call, invite, session } from "./api";
import { hydrated } from "./hydrated";

test("a member makes a subnet and a group, launches into them, and sees the VM's address", async ({ browser }) => {
  test.setTimeout(120_000);
  const admin = await session("admin", adminPassword);
  const tenant = await call<{ id: string }>(admin, "tenant_create", { name: "netco" });
  const invited = await invite(admin, tenant.id, "net-member", "member");
  await session("net-member", invited.one_time_password); // chooses `${otp}-own`
  const context = await browser.newContext();
  const signIn = await context.request.post("/api/fn/login", {
    form: { username: "net-member", password: `${invited.one_time_password}-own` },
  });
  expect(signIn.status()).toBe(200);
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  const sent: string[] = [];
  page.on("request", (r) => r.url().includes("/api/fn/subnet_create") && sent.push(r.postData() ?? ""));
  const launches: string[] = [];
  page.on("request", (r) => r.url().includes("/api/fn/instance_create") && launches.push(r.postData() ?? ""));

  await page.goto("/networking");
  await hydrated(page);
  const defaultVpc = page.locator('[data-testid="vpc"][data-name="default"]');
  await expect(defaultVpc.locator('[data-testid="subnet-row"][data-name="default"]')).toContainText("10.0.0.0/20");
  await expect(page.locator('[data-testid="security-group"][data-name="default"] [data-testid="rule-row"]')).toHaveCount(4);

  // A subnet: a network with host bits set is explained as it is typed, and never sent.
  const subnetForm = page.getByTestId("subnet-form");
  await subnetForm.getByTestId("subnet-name").fill("train");
  await subnetForm.getByTestId("subnet-cidr").fill("10.1.2.3/24");
  await expect(page.getByTestId("subnet-error")).toContainText("the network is 10.1.2.0/24");
  await expect(subnetForm.getByTestId("subnet-add")).toBeDisabled();
  await subnetForm.getByTestId("subnet-cidr").fill("10.1.2.0/24");
  await expect(page.getByTestId("subnet-error")).toHaveCount(0);
  await subnetForm.getByTestId("subnet-add").click();
  const train = defaultVpc.locator('[data-testid="subnet-row"][data-name="train"]');
  await expect(train).toContainText("10.1.2.1");
  expect(sent.filter((b) => b.includes("10.1.2.3"))).toEqual([]);
  // Overlapping it is refused by the server with the subnet it overlaps.
  await subnetForm.getByTestId("subnet-name").fill("again");
  await subnetForm.getByTestId("subnet-cidr").fill("10.1.2.128/25");
  await subnetForm.getByTestId("subnet-add").click();
  await expect(page.getByTestId("subnet-error")).toContainText('overlaps subnet "train"');

  // A group with one rule; a bad port range is explained as it is typed.
  await page.getByTestId("group-name").fill("web");
  await page.getByTestId("group-add").click();
  const web = page.locator('[data-testid="security-group"][data-name="web"]');
  await expect(web).toBeVisible();
  await hydrated(page);
  await web.getByTestId("rule-ports").fill("70000");
  await web.getByTestId("rule-cidr").fill("192.168.0.0/16");
  await expect(web.getByTestId("rule-error")).toContainText("is not a port or range");
  await expect(web.getByTestId("rule-add")).toBeDisabled();
  await web.getByTestId("rule-ports").fill("8080");
  await web.getByTestId("rule-add").click();
  await expect(web.getByTestId("rule-row")).toHaveCount(1);
  await expect(web.getByTestId("rule-row")).toContainText("192.168.0.0/16");

  // Launch into them from the dashboard.
  await page.goto("/");
  await hydrated(page);
  await page.getByTestId("launch-name").fill("net-vm");
  await page.getByTestId("launch-type").selectOption("c8m32");
  await page.getByTestId("launch-subnet").selectOption({ label: "default / train (10.1.2.0/24)" });
  const groups = page.getByTestId("launch-group");
  await expect(groups.first()).toBeChecked(); // the default group, preselected
  await groups.first().uncheck();
  await page.locator("label.check", { hasText: "web" }).getByTestId("launch-group").check();
  // The form carries an idempotency key: submitted twice at once, it makes one VM.
  const key = await page.getByTestId("launch-key").inputValue();
  expect(key).toMatch(/^web-[0-9a-f]{26}$/);
  await page.getByTestId("launch-form").evaluate((f) => {
    (f as HTMLFormElement).requestSubmit();
    (f as HTMLFormElement).requestSubmit();
  });
  const row = page.locator('[data-testid="instance-row"][data-name="net-vm"]');
  await expect(row.getByTestId("instance-state")).toHaveText("running", { timeout: 20_000 });
  await expect(page.getByTestId("launch-key")).not.toHaveValue(key); // a new key for the next launch
  expect(launches).toHaveLength(2);
  expect(launches.every((body) => body.includes(key))).toBe(true);
  const launched = await call<{ name: string }[]>(context.request, "instance_list", {});
  expect(launched.filter((i) => i.name.startsWith("net-vm"))).toHaveLength(1);
  await row.getByTestId("instance-link").click();
  await hydrated(page);
  await expect(page.getByTestId("port-ip")).toHaveText("10.1.2.2");
  await expect(page.getByTestId("port-row")).toContainText("web");
  await expect(page.getByTestId("port-state")).toHaveText("ready", { timeout: 10_000 });
  await expect(page.getByTestId("instance-ssh")).toContainText(/ssh [a-z]+@10\.1\.2\.2/);

  // The subnet stays while the VM has an address in it, and goes once the VM is deleted.
  const list = await call<{ id: string; name: string }[]>(context.request, "instance_list", {});
  const vm = list.find((i) => i.name === "net-vm")!;
  await page.goto("/networking");
  await hydrated(page);
  await train.getByRole("button", { name: "Delete" }).click();
  await expect(page.getByTestId("network-error")).toContainText("still have an address");
  await call(context.request, "instance_delete", { id: vm.id });
  await expect
    .poll(async () => (await context.request.post("/api/fn/subnet_delete", { form: { id: await subnetId() } })).status(), { timeout: 20_000 })
    .toBe(200);
  expect(errors).toEqual([]);

  async function subnetId(): Promise<string> {
    const net = await call<{ vpcs: { subnets: { id: string; name: string }[] }[] }>(context.request, "network_overview", {});
    return net.vpcs.flatMap((v) => v.subnets).find((s) => s.name === "train")?.id ?? "00000000-0000-4000-8000-000000000000";
  }
});
