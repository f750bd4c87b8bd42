// The hammer: every page and every server function the pages call, as provider admin,
// tenant admin and member, loaded 100 times in a row and then 200 times each at 16
// concurrent. Every response must be complete (a page ends with its last script) within 5 s and
// never a 5xx, and the portal must still answer /healthz afterwards. A page whose
// rendering can deadlock (DESIGN §5, the Leptos SSR trap) fails here.
import { expect, test } from "@playwright/test";
import { adminPassword, base, call, cookieOf, invite, session } from "./api";

const SEQUENTIAL = 100;
const CONCURRENT = 200;
const PARALLEL = 16;
const DEADLINE_MS = 5_000;
const MAX_FAILURES = 20;

interface Target {
  name: string;
  send: (cookie: string) => Promise<{ status: number; complete: boolean }>;
}

// Node's own fetch: the load generator must stay light beside the portal on two cores.
const page = (path: string): Target => ({
  name: `GET ${path}`,
  send: async (cookie) => {
    const r = await fetch(base + path, { headers: { cookie }, redirect: "manual", signal: AbortSignal.timeout(DEADLINE_MS) });
    const body = await r.text();
    // A whole page has its document and, last, the script that says no chunk is pending.
    const complete = body.includes("</html>") && body.trimEnd().endsWith("__INCOMPLETE_CHUNKS=[];</script>");
    return { status: r.status, complete: r.status !== 200 || complete };
  },
});

const fn = (name: string, form: Record<string, string> = {}): Target => ({
  name: `POST /api/fn/${name}`,
  send: async (cookie) => {
    const r = await fetch(`${base}/api/fn/${name}`, {
      method: "POST",
      headers: { cookie, "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(form),
      signal: AbortSignal.timeout(DEADLINE_MS),
    });
    await r.arrayBuffer();
    return { status: r.status, complete: true };
  },
});

test("no page or server function hangs or fails under repeated and concurrent load", async () => {
  test.setTimeout(900_000);
  const admin = await session("admin", adminPassword);
  const me = await call<{ tenant_id: string }>(admin, "get_me", {});
  const scratch = await call<{ id: string }>(admin, "tenant_create", { name: "hammer-scratch" });
  const tenantAdmin = await invite(admin, me.tenant_id, "hammer-admin", "tenant-admin");
  const member = await invite(admin, me.tenant_id, "hammer-member", "member");
  const vm = await call<{ id: string }[]>(admin, "instance_create", {
    "create[name]": "hammer-vm", "create[instance_type]": "c8m32",
  });
  const roles: Record<string, string> = {
    "provider admin": await cookieOf(admin),
    "tenant admin": await cookieOf(await session("hammer-admin", tenantAdmin.one_time_password)),
    member: await cookieOf(await session("hammer-member", member.one_time_password)),
  };

  const month = new Date().toISOString().slice(0, 7);
  const targets: Target[] = [
    page("/"),
    page("/login"),
    page("/account"),
    page("/keys"),
    page("/networking"),
    page("/networking/public-ips"),
    page("/admin"),
    page(`/admin?tenant=${scratch.id}`),
    page("/admin/identity"),
    page("/admin/tenants"),
    page("/users"),
    page("/audit"),
    page("/admin/hosts/su1-h01"),
    page("/admin/su/su1"),
    page("/admin/su/su1/fabric"),
    page(`/instances/${vm[0].id}`),
    page("/usage"),
    page(`/usage/invoices/${month}`),
    page("/admin/usage"),
    page("/admin/prices"),
    page("/admin/public-ip-pools"),
    fn("get_me"),
    fn("fleet_summary"),
    fn("capacity"),
    fn("quota_get", { tenant_id: me.tenant_id }),
    fn("instance_type_list"),
    fn("launch_options"),
    fn("instance_list"),
    fn("instance_get", { id: vm[0].id }),
    fn("instance_port_counters", { id: vm[0].id }),
    fn("session_list"),
    fn("api_token_list"),
    fn("ssh_key_list"),
    fn("network_overview"),
    fn("public_ip_list"),
    fn("public_ip_pool_list"),
    fn("identity_provider_list"),
    fn("identity_provider_buttons"),
    fn("sso_refusal", { reference: "0123456789abcdef" }),
    fn("tenant_list"),
    fn("tenant_deletion_preview", { tenant_id: scratch.id }),
    fn("user_list", { tenant_id: me.tenant_id }),
    fn("audit_list"),
    fn("host_topology", { name: "su1-h01" }),
    fn("scalable_unit_topology", { su: "su1" }),
    fn("scalable_unit_fabric", { su: "su1" }),
    fn("usage_summary"),
    fn("invoice_get", { month }),
    fn("provider_usage"),
    fn("price_list"),
  ];

  const failures: string[] = [];
  let requests = 0;
  const latencies: number[] = [];
  const hit = async (role: string, target: Target) => {
    if (failures.length >= MAX_FAILURES) return;
    const started = Date.now();
    try {
      const { status, complete } = await target.send(roles[role]);
      const elapsed = Date.now() - started;
      latencies.push(elapsed);
      if (status >= 500 || !complete || elapsed > DEADLINE_MS) {
        failures.push(`${target.name} as ${role}: status ${status}, ${complete ? "complete" : "incomplete body"}, ${elapsed} ms`);
      }
    } catch (e) {
      failures.push(`${target.name} as ${role}: ${String(e).split("\n")[0]} after ${Date.now() - started} ms`);
    }
    requests++;
  };

  for (const role of Object.keys(roles)) {
    // In a row: one request at a time.
    for (const target of targets) {
      for (let i = 0; i < SEQUENTIAL; i++) await hit(role, target);
    }
    // At 16 concurrent: every target 200 times, interleaved.
    const queue = targets.flatMap((t) => Array.from({ length: CONCURRENT }, () => t));
    queue.sort(() => Math.random() - 0.5);
    await Promise.all(
      Array.from({ length: PARALLEL }, async () => {
        for (let t = queue.pop(); t; t = queue.pop()) await hit(role, t);
      }),
    );
  }

  try {
    const health = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(DEADLINE_MS) });
    if (health.status !== 200) failures.push(`/healthz after the hammer: status ${health.status}`);
  } catch (e) {
    failures.push(`/healthz after the hammer: ${String(e).split("\n")[0]}`);
  }
  await call(admin, "instance_delete", { id: vm[0].id });
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))];
  console.log(`hammer: ${requests} requests, p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms, max ${pct(1)} ms, ${failures.length} failures`);
  expect(failures).toEqual([]);
});
