//! "Networking": the tenant's VPCs with their subnets, and its security groups with a rule
//! editor that checks each rule as it is typed. Everyone in the tenant sees it; members and
//! admins change it. Rule changes reach every VM in the group at once (on its DPU). Its
//! other tab, Public IPs, is `public_ips`.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use portal_types::Role;
use portal_types::ids::SecurityGroupUuid;
use portal_types::network::{
    Direction, NetworkOverview, Protocol, SecurityGroupView, SecurityRuleCreate, SubnetCreate,
    VpcView,
};
use portal_types::views::Me;

use crate::api::{
    SecurityGroupCreate, SecurityGroupDelete, SecurityRuleCreate as AddRule, SecurityRuleDelete,
    SubnetCreate as AddSubnet, SubnetDelete, VpcCreate, VpcDelete, network_overview,
};
use crate::form::{FormAction, PostForm};

#[component]
pub fn NetworkingPage() -> impl IntoView {
    super::guarded(|_| true, |me| view! { <Networking me /> }.into_any())
}

/// Every action of the page, so that any of them refreshes the one overview.
#[derive(Clone, Copy)]
struct Actions {
    vpc_create: FormAction<VpcCreate>,
    vpc_delete: ServerAction<VpcDelete>,
    subnet_create: ServerAction<AddSubnet>,
    subnet_delete: ServerAction<SubnetDelete>,
    group_create: FormAction<SecurityGroupCreate>,
    group_delete: ServerAction<SecurityGroupDelete>,
    rule_create: ServerAction<AddRule>,
    rule_delete: ServerAction<SecurityRuleDelete>,
}

impl Actions {
    fn new() -> Self {
        Actions {
            vpc_create: FormAction::new(),
            vpc_delete: ServerAction::new(),
            subnet_create: ServerAction::new(),
            subnet_delete: ServerAction::new(),
            group_create: FormAction::new(),
            group_delete: ServerAction::new(),
            rule_create: ServerAction::new(),
            rule_delete: ServerAction::new(),
        }
    }

    fn versions(&self) -> [usize; 8] {
        [
            self.vpc_create.version().get(),
            self.vpc_delete.version().get(),
            self.subnet_create.version().get(),
            self.subnet_delete.version().get(),
            self.group_create.version().get(),
            self.group_delete.version().get(),
            self.rule_create.version().get(),
            self.rule_delete.version().get(),
        ]
    }

    /// The latest refusal of a delete, for the banner at the top.
    fn delete_error(&self) -> Option<String> {
        error_of(self.vpc_delete.value().get())
            .or_else(|| error_of(self.subnet_delete.value().get()))
            .or_else(|| error_of(self.group_delete.value().get()))
            .or_else(|| error_of(self.rule_delete.value().get()))
    }
}

/// An action's refusal, as the sentence to show.
fn error_of<T>(value: Option<Result<T, portal_types::Error>>) -> Option<String> {
    value.and_then(|r| r.err()).map(|e| e.to_string())
}

#[component]
fn Networking(me: Me) -> impl IntoView {
    let actions = Actions::new();
    let overview = crate::json::resource(move || actions.versions(), |_| network_overview());
    let can_write = me.role >= Role::Member || me.provider_admin;
    view! {
        <main class="dashboard">
            {super::public_ips::networking_tabs(false)}
            <Show when=move || actions.delete_error().is_some()>
                <p class="error" role="alert" data-testid="network-error">{move || actions.delete_error()}</p>
            </Show>
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || overview.get().map(|result| match result {
                    Ok(net) => view! { <Overview net actions can_write /> }.into_any(),
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                })}
            </Transition>
            {can_write.then(|| view! { <NewVpcAndGroup actions /> })}
        </main>
    }
}

#[component]
fn Overview(net: NetworkOverview, actions: Actions, can_write: bool) -> impl IntoView {
    let vpcs = net.vpcs.clone();
    let groups = net.security_groups.clone();
    let group_names: Vec<(SecurityGroupUuid, String)> =
        groups.iter().map(|g| (g.id, g.name.clone())).collect();
    view! {
        <section class="panel" data-testid="vpcs">
            <h2>"VPCs and subnets"</h2>
            <p class="muted">"Each VPC is a private network of its own (a VRF on the fabric); VMs in different VPCs or tenants never reach each other."</p>
            {vpcs.iter().cloned().map(|vpc| view! { <Vpc vpc actions can_write /> }).collect_view()}
            {can_write.then(|| view! { <NewSubnet vpcs=vpcs.clone() actions /> })}
        </section>
        <section class="panel" data-testid="security-groups">
            <h2>"Security groups"</h2>
            <p class="muted">"Allow rules, enforced on each VM's DPU (not in the guest). Anything no rule allows is dropped; replies to allowed traffic pass."</p>
            {groups.into_iter().map(|group| {
                let names = group_names.clone();
                view! { <Group group names actions can_write /> }
            }).collect_view()}
        </section>
    }
}

#[component]
fn Vpc(vpc: VpcView, actions: Actions, can_write: bool) -> impl IntoView {
    let id = vpc.id;
    view! {
        <div class="vpc" data-testid="vpc" data-name=vpc.name.clone()>
            <h3>
                {vpc.name.clone()}
                <span class="muted">{format!(" · L3 VNI {}", vpc.vni)}</span>
                {vpc.is_default.then_some(view! { <span class="badge">"default"</span> })}
                {(can_write && !vpc.is_default).then(|| view! {
                    <button class="danger small" data-testid="vpc-delete"
                        on:click=move |_| { actions.vpc_delete.dispatch(VpcDelete { id }); }>"Delete VPC"</button>
                })}
            </h3>
            <table class="instances" data-testid="subnet-table">
                <thead><tr><th>"Subnet"</th><th>"Network"</th><th>"Gateway"</th><th>"VNI"</th><th>"VMs"</th><th>"Free"</th><th></th></tr></thead>
                <tbody>
                    {vpc.subnets.into_iter().map(|s| {
                        let sid = s.id;
                        view! {
                            <tr data-testid="subnet-row" data-name=s.name.clone()>
                                <td class="name">{s.name.clone()} {s.is_default.then_some(view! { <span class="badge">"default"</span> })}</td>
                                <td><code>{s.cidr.clone()}</code></td>
                                <td><code>{s.gateway.clone()}</code></td>
                                <td>{s.vni}</td>
                                <td>{s.ports}</td>
                                <td>{s.free}</td>
                                <td>{(can_write && !s.is_default).then(|| view! {
                                    <button class="danger small" on:click=move |_| {
                                        actions.subnet_delete.dispatch(SubnetDelete { id: sid });
                                    }>"Delete"</button>
                                })}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}

#[component]
fn NewSubnet(vpcs: Vec<VpcView>, actions: Actions) -> impl IntoView {
    let first = vpcs.first().map(|v| v.id.to_string()).unwrap_or_default();
    let vpc = RwSignal::new(first);
    let name = RwSignal::new(String::new());
    let cidr = RwSignal::new(String::new());
    let check = move || -> Result<SubnetCreate, String> {
        let create = SubnetCreate {
            vpc: vpc.get().parse().map_err(|_| "Pick a VPC.".to_owned())?,
            name: name.get().trim().to_owned(),
            cidr: cidr.get(),
        };
        create.validate().map_err(|e| e.to_string())?;
        Ok(create)
    };
    // Only say what is wrong once something was typed.
    let hint =
        move || (!cidr.get().is_empty() || !name.get().is_empty()).then(|| check().err()).flatten();
    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        if let Ok(create) = check() {
            actions.subnet_create.dispatch(AddSubnet { create });
        }
    };
    Effect::new(move |_| {
        if let Some(Ok(_)) = actions.subnet_create.value().get() {
            name.set(String::new());
            cidr.set(String::new());
        }
    });
    let refused = move || error_of(actions.subnet_create.value().get());
    view! {
        <h3>"Add a subnet"</h3>
        <form class="launch" data-testid="subnet-form" on:submit=on_submit>
            <label>"VPC"
                <select data-testid="subnet-vpc" on:change=move |ev| vpc.set(event_target_value(&ev))>
                    {vpcs.iter().map(|v| view! { <option value=v.id.to_string()>{v.name.clone()}</option> }).collect_view()}
                </select>
            </label>
            <label>"Name"
                <input type="text" required maxlength="63" placeholder="training" data-testid="subnet-name"
                    prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev)) />
            </label>
            <label>"Network"
                <input type="text" required placeholder="10.1.0.0/24" data-testid="subnet-cidr"
                    prop:value=move || cidr.get() on:input=move |ev| cidr.set(event_target_value(&ev)) />
            </label>
            <button type="submit" class="primary" data-testid="subnet-add" disabled=move || check().is_err()>"Add subnet"</button>
        </form>
        <Show when=move || hint().is_some() || refused().is_some()>
            <p class="error" role="alert" data-testid="subnet-error">{move || hint().or_else(refused)}</p>
        </Show>
    }
}

#[component]
fn Group(
    group: SecurityGroupView,
    names: Vec<(SecurityGroupUuid, String)>,
    actions: Actions,
    can_write: bool,
) -> impl IntoView {
    let id = group.id;
    view! {
        <div class="group" data-testid="security-group" data-name=group.name.clone()>
            <h3>
                {group.name.clone()}
                {group.is_default.then_some(view! { <span class="badge">"default"</span> })}
                <span class="muted">{format!(" · {} VM(s)", group.ports)}</span>
                {(can_write && !group.is_default).then(|| view! {
                    <button class="danger small" data-testid="group-delete"
                        on:click=move |_| { actions.group_delete.dispatch(SecurityGroupDelete { id }); }>"Delete group"</button>
                })}
            </h3>
            <p class="muted">{group.description.clone()}</p>
            <table class="instances" data-testid="rule-table">
                <thead><tr><th>"Direction"</th><th>"Protocol"</th><th>"Ports"</th><th>"From / to"</th><th></th></tr></thead>
                <tbody>
                    {group.rules.into_iter().map(|r| {
                        let rid = r.id;
                        let ports = match r.ports {
                            None => "all".to_owned(),
                            Some((1, 65535)) => "all".to_owned(),
                            Some((a, b)) if a == b => a.to_string(),
                            Some((a, b)) => format!("{a}-{b}"),
                        };
                        view! {
                            <tr data-testid="rule-row">
                                <td>{r.direction.as_str()}</td>
                                <td>{r.protocol.as_str()}</td>
                                <td>{ports}</td>
                                <td><code>{r.remote.clone()}</code></td>
                                <td>{can_write.then(|| view! {
                                    <button class="danger small" data-testid="rule-delete" on:click=move |_| {
                                        actions.rule_delete.dispatch(SecurityRuleDelete { id: rid });
                                    }>"Delete"</button>
                                })}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
            {can_write.then(|| view! { <RuleEditor group=id names actions /> })}
        </div>
    }
}

/// One rule, checked on every keystroke with the same code the server runs.
#[component]
fn RuleEditor(
    group: SecurityGroupUuid,
    names: Vec<(SecurityGroupUuid, String)>,
    actions: Actions,
) -> impl IntoView {
    let direction = RwSignal::new(Direction::Ingress);
    let protocol = RwSignal::new(Protocol::Tcp);
    let ports = RwSignal::new(String::new());
    // A network, or `group:<id>` for another group's VMs.
    let remote = RwSignal::new(String::new());
    let remote_group = RwSignal::new(String::new());
    let rule = move || SecurityRuleCreate {
        group,
        direction: direction.get(),
        protocol: protocol.get(),
        ports: ports.get(),
        remote_cidr: remote.get(),
        remote_group: remote_group.get().parse().ok(),
    };
    let check = move || rule().validate().map(|_| ()).map_err(|e| e.to_string());
    let touched = move || !ports.get().is_empty() || !remote.get().is_empty();
    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        if check().is_ok() {
            actions.rule_create.dispatch(AddRule { create: rule() });
        }
    };
    Effect::new(move |_| {
        if let Some(Ok(_)) = actions.rule_create.value().get() {
            ports.set(String::new());
            remote.set(String::new());
            remote_group.set(String::new());
        }
    });
    let refused = move || error_of(actions.rule_create.value().get());
    let hint = move || touched().then(|| check().err()).flatten().or_else(refused);
    view! {
        <form class="launch rule" data-testid="rule-form" on:submit=on_submit>
            <select data-testid="rule-direction" on:change=move |ev| {
                direction.set(Direction::parse(&event_target_value(&ev)).unwrap_or(Direction::Ingress));
            }>
                <option value="ingress">"ingress (into the VM)"</option>
                <option value="egress">"egress (out of the VM)"</option>
            </select>
            <select data-testid="rule-protocol" on:change=move |ev| {
                protocol.set(Protocol::parse(&event_target_value(&ev)).unwrap_or(Protocol::Tcp));
            }>
                <option value="tcp">"TCP"</option>
                <option value="udp">"UDP"</option>
                <option value="icmp">"ICMP"</option>
                <option value="any">"any"</option>
            </select>
            <input type="text" placeholder="22 or 8000-8100 (empty: all)" data-testid="rule-ports"
                prop:value=move || ports.get() on:input=move |ev| ports.set(event_target_value(&ev)) />
            <input type="text" placeholder="0.0.0.0/0" data-testid="rule-cidr"
                prop:value=move || remote.get() on:input=move |ev| remote.set(event_target_value(&ev)) />
            <select data-testid="rule-group" on:change=move |ev| remote_group.set(event_target_value(&ev))>
                <option value="">"or a group's VMs…"</option>
                {names.into_iter().map(|(id, name)| view! { <option value=id.to_string()>{name}</option> }).collect_view()}
            </select>
            <button type="submit" class="primary" data-testid="rule-add" disabled=move || check().is_err()>"Add rule"</button>
        </form>
        <Show when=move || hint().is_some()>
            <p class="error" role="alert" data-testid="rule-error">{hint}</p>
        </Show>
    }
}

#[component]
fn NewVpcAndGroup(actions: Actions) -> impl IntoView {
    let vpc_error = move || error_of(actions.vpc_create.value().get());
    let group_error = move || error_of(actions.group_create.value().get());
    view! {
        <section class="panel">
            <h2>"New VPC"</h2>
            <PostForm action=actions.vpc_create attr:class="launch" attr:data-testid="vpc-form">
                <label>"Name"
                    <input type="text" name="create[name]" required maxlength="63" placeholder="research" data-testid="vpc-name" />
                </label>
                <button type="submit" class="primary" data-testid="vpc-add">"Create VPC"</button>
            </PostForm>
            <Show when=move || vpc_error().is_some()>
                <p class="error" role="alert" data-testid="vpc-error">{vpc_error}</p>
            </Show>
            <h2>"New security group"</h2>
            <PostForm action=actions.group_create attr:class="launch" attr:data-testid="group-form">
                <label>"Name"
                    <input type="text" name="create[name]" required maxlength="63" placeholder="web" data-testid="group-name" />
                </label>
                <label class="wide">"Description"
                    <input type="text" name="create[description]" maxlength="200" placeholder="what it is for" data-testid="group-description" />
                </label>
                <button type="submit" class="primary" data-testid="group-add">"Create group"</button>
            </PostForm>
            <Show when=move || group_error().is_some()>
                <p class="error" role="alert" data-testid="group-error">{group_error}</p>
            </Show>
        </section>
    }
}
