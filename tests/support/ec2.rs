//! The cloud side of the ec2 driver's tests, all real parts on loopback:
//!
//! - [`Moto`]: moto's EC2-compatible API server (from PyPI), one per test.
//! - [`FaultProxy`]: an HTTP proxy in front of it that injects the faults a real cloud
//!   has (throttling, 500s before or after the request took effect, no capacity) and
//!   can show new instances as `pending` for a while, as EC2 does.
//! - [`Simulator`]: "boots" each instance moto says is running by running its user
//!   data locally (so a real buildbot-worker connects with the one-time credentials),
//!   and kills it when the instance is terminated.

use super::master::free_port;
use super::workers::require_peer;
use base64::Engine;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Requests signed for region us-east-1 and service ec2 (moto routes by the scope and
/// does not check the signature).
const AUTH: &str = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0";

/// The environment a master under test needs to talk to the emulator.
pub fn aws_env() -> [(&'static str, &'static str); 5] {
    [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/dev/null"),
    ]
}

/// A moto server. Dropping it kills it.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    pub fn start(log: &Path) -> Moto {
        let venv = require_peer("moto");
        let port = free_port();
        let log = std::fs::File::create(log).expect("moto log");
        let child = Command::new(venv.join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // An unknown image is an error, as on EC2.
            .env("MOTO_ENABLE_AMI_VALIDATION", "true")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("moto_server starts");
        let moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if moto.api().call(&[("Action", "DescribeRegions")]).is_some() {
                return moto;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("moto_server did not answer on port {port}");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One EC2 API call straight to the emulator; the response's XML.
    pub fn call(&self, params: &[(&str, &str)]) -> String {
        self.api().call(params).expect("moto answers")
    }

    pub fn api(&self) -> Api {
        Api { port: self.port }
    }

    /// Every instance moto knows: (id, state, tags).
    pub fn instances(&self) -> Vec<CloudInstance> {
        parse_instances(&self.call(&[("Action", "DescribeInstances")]))
    }

    /// Instances not terminated (pending, running, stopping, stopped).
    pub fn alive(&self) -> Vec<CloudInstance> {
        self.instances()
            .into_iter()
            .filter(|i| i.state != "terminated" && i.state != "shutting-down")
            .collect()
    }

    /// A field of instance `id` as DescribeInstances gives it (`instanceType`,
    /// `subnetId`), or `None`.
    pub fn field(&self, id: &str, field: &str) -> Option<String> {
        let xml = self.call(&[("Action", "DescribeInstances"), ("InstanceId.1", id)]);
        between(&xml, &format!("<{field}>"), &format!("</{field}>")).map(str::to_owned)
    }

    /// The ids of the emulator's default subnets, by availability zone.
    pub fn subnets(&self) -> Vec<String> {
        let xml = self.call(&[("Action", "DescribeSubnets")]);
        let mut found: Vec<(String, String)> = xml
            .split("<item>")
            .filter_map(|item| {
                Some((
                    between(item, "<availabilityZone>", "</availabilityZone>")?.to_owned(),
                    between(item, "<subnetId>", "</subnetId>")?.to_owned(),
                ))
            })
            .collect();
        found.sort();
        found.into_iter().map(|(_, id)| id).collect()
    }

    pub fn terminate(&self, id: &str) {
        self.call(&[("Action", "TerminateInstances"), ("InstanceId.1", id)]);
    }

    /// An instance as another master (or a person) would launch it, tagged as given.
    pub fn launch_tagged(&self, tags: &[(&str, &str)]) -> String {
        let mut params: Vec<(String, String)> = [
            ("Action", "RunInstances"),
            ("ImageId", IMAGE),
            ("MinCount", "1"),
            ("MaxCount", "1"),
            ("TagSpecification.1.ResourceType", "instance"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (n, (k, v)) in tags.iter().enumerate() {
            params.push((format!("TagSpecification.1.Tag.{}.Key", n + 1), (*k).into()));
            params.push((
                format!("TagSpecification.1.Tag.{}.Value", n + 1),
                (*v).into(),
            ));
        }
        let refs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let xml = self.call(&refs);
        between(&xml, "<instanceId>", "</instanceId>")
            .expect("an instance id")
            .to_owned()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An image moto ships (`ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-20170721`,
/// owner 099720109477).
pub const IMAGE: &str = "ami-785db401";

#[derive(Debug, Clone)]
pub struct CloudInstance {
    pub id: String,
    pub state: String,
    pub tags: HashMap<String, String>,
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// The instances of a DescribeInstances answer. In moto's XML an instance's tags come
/// before its id and its state after it, so each instance is the text between the
/// end of one `instanceState` and the end of the next.
fn parse_instances(xml: &str) -> Vec<CloudInstance> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(state_at) = rest.find("</instanceState>") {
        let item = &rest[..state_at];
        rest = &rest[state_at + "</instanceState>".len()..];
        let Some(id_at) = item.rfind("<instanceId>") else {
            continue;
        };
        let id = between(&item[id_at..], "<instanceId>", "</instanceId>").unwrap_or("");
        let state = item
            .rfind("<instanceState>")
            .and_then(|s| between(&item[s..], "<name>", "</name>"))
            .unwrap_or("");
        let mut tags = HashMap::new();
        if let Some(t) = item[..id_at].rfind("<tagSet>") {
            let set = between(&item[t..], "<tagSet>", "</tagSet>").unwrap_or("");
            for entry in set.split("<item>").skip(1) {
                if let (Some(k), Some(v)) = (
                    between(entry, "<key>", "</key>"),
                    between(entry, "<value>", "</value>"),
                ) {
                    tags.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        out.push(CloudInstance {
            id: id.to_owned(),
            state: state.to_owned(),
            tags,
        });
    }
    out
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A fault the proxy injects into the next `times` calls of `action`.
#[derive(Debug, Clone)]
pub struct Fault {
    pub action: String,
    /// Only requests whose body contains this (e.g. `MarketType=spot`).
    pub body_contains: Option<String>,
    pub kind: FaultKind,
    pub times: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// 503 RequestLimitExceeded; the request never reaches the API.
    Throttle,
    /// 500 InternalError; the request never reaches the API.
    ServerError,
    /// The request takes effect, then the client gets 500 InternalError.
    ServerErrorAfter,
    /// 500 InsufficientInstanceCapacity; the request never reaches the API.
    NoCapacity,
    /// 400 InsufficientFreeAddressesInSubnet; the request never reaches the API.
    NoAddresses,
}

#[derive(Debug, Default)]
struct ProxyState {
    faults: Vec<Fault>,
    /// Calls seen, by action.
    calls: HashMap<String, usize>,
    /// Faults injected, by action.
    injected: HashMap<String, usize>,
    /// Instances are shown as pending until this long after the proxy first saw them.
    pending_for: Duration,
    first_seen: HashMap<String, Instant>,
    /// Instances shown to the master as ended by a spot interruption, while the
    /// emulator (and the simulator) still run them.
    interrupted: HashSet<String>,
    /// Spot instances whose request the proxy shows as marked for termination (the
    /// two-minute notice); they still run.
    marked: HashSet<String>,
    /// Request bodies, by action.
    bodies: HashMap<String, Vec<String>>,
}

/// An HTTP/1.1 proxy in front of moto that injects faults. Runs until dropped.
pub struct FaultProxy {
    pub port: u16,
    state: Arc<Mutex<ProxyState>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    pub fn start(upstream: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !sp.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let st = st.clone();
                        std::thread::spawn(move || serve(client, upstream, &st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FaultProxy {
            port,
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    pub fn show_pending_for(&self, d: Duration) {
        self.lock().pending_for = d;
    }

    /// Shows instance `id` as terminated by a spot interruption from now on.
    pub fn interrupt(&self, id: &str) {
        self.lock().interrupted.insert(id.to_owned());
    }

    /// Gives spot instance `id` an interruption notice: DescribeSpotInstanceRequests
    /// shows its request `marked-for-termination` (moto keeps no spot request for an
    /// instance RunInstances launched on the spot market, so the proxy answers).
    pub fn mark_for_termination(&self, id: &str) {
        self.lock().marked.insert(id.to_owned());
    }

    /// The bodies of the requests of `action` seen so far, oldest first.
    pub fn bodies(&self, action: &str) -> Vec<String> {
        self.lock().bodies.get(action).cloned().unwrap_or_default()
    }

    pub fn calls(&self, action: &str) -> usize {
        self.lock().calls.get(action).copied().unwrap_or(0)
    }

    pub fn injected(&self, action: &str) -> usize {
        self.lock().injected.get(action).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProxyState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One HTTP request: head lines and body.
struct Request {
    head: Vec<String>,
    body: Vec<u8>,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let length = head
        .iter()
        .find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request { head, body })
}

fn serve(client: TcpStream, upstream: u16, state: &Mutex<ProxyState>) {
    let _ = client.set_nonblocking(false);
    let Ok(mut writer) = client.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(client);
    while let Some(req) = read_request(&mut reader) {
        let body = String::from_utf8_lossy(&req.body).into_owned();
        let action = body
            .split('&')
            .find_map(|kv| kv.strip_prefix("Action="))
            .unwrap_or("")
            .to_owned();
        let fault = {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            *s.calls.entry(action.clone()).or_default() += 1;
            s.bodies
                .entry(action.clone())
                .or_default()
                .push(body.clone());
            let found = s.faults.iter_mut().position(|f| {
                f.times > 0
                    && f.action == action
                    && f.body_contains.as_ref().is_none_or(|c| body.contains(c))
            });
            let kind = found.map(|i| {
                s.faults[i].times -= 1;
                s.faults[i].kind
            });
            if kind.is_some() {
                *s.injected.entry(action.clone()).or_default() += 1;
            }
            kind
        };
        let (status, text) = match fault {
            Some(FaultKind::Throttle) => (
                503,
                error_xml("RequestLimitExceeded", "Request limit exceeded."),
            ),
            Some(FaultKind::ServerError) => (
                500,
                error_xml("InternalError", "An internal error has occurred."),
            ),
            Some(FaultKind::NoCapacity) => (
                500,
                error_xml(
                    "InsufficientInstanceCapacity",
                    "There is no Spot capacity available that matches your request.",
                ),
            ),
            Some(FaultKind::NoAddresses) => (
                400,
                error_xml(
                    "InsufficientFreeAddressesInSubnet",
                    "There are not enough free addresses in the subnet to satisfy the request.",
                ),
            ),
            Some(FaultKind::ServerErrorAfter) => {
                let _ = forward(&req, upstream);
                (
                    500,
                    error_xml("InternalError", "An internal error has occurred."),
                )
            }
            None if action == "DescribeSpotInstanceRequests" && notice(&body, state).is_some() => {
                (200, notice(&body, state).unwrap_or_default())
            }
            None => match forward(&req, upstream) {
                Some((status, text)) => (status, rewrite(&action, text, state)),
                None => (502, error_xml("InternalError", "proxy: upstream failed")),
            },
        };
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Status",
        };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n",
            text.len()
        );
        if writer.write_all(response.as_bytes()).is_err()
            || writer.write_all(text.as_bytes()).is_err()
        {
            return;
        }
    }
}

/// The answer to a DescribeSpotInstanceRequests call filtered on the instance id of
/// an instance marked for termination: its request, with the notice as its status.
fn notice(body: &str, state: &Mutex<ProxyState>) -> Option<String> {
    let s = state.lock().unwrap_or_else(|p| p.into_inner());
    let id = body
        .split('&')
        .find_map(|kv| kv.strip_prefix("Filter.1.Value.1="))?;
    if !body.contains("Filter.1.Name=instance-id") || !s.marked.contains(id) {
        return None;
    }
    Some(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeSpotInstanceRequestsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>fault-proxy</requestId><spotInstanceRequestSet><item><spotInstanceRequestId>sir-{id}</spotInstanceRequestId><state>active</state><type>one-time</type><instanceId>{id}</instanceId><status><code>marked-for-termination</code><updateTime>2026-01-01T00:00:00.000Z</updateTime><message>Your Spot Instance is marked for termination because of a lack of capacity.</message></status></item></spotInstanceRequestSet></DescribeSpotInstanceRequestsResponse>"
    ))
}

fn error_xml(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>"
    )
}

/// Sends the request to moto on a fresh connection; its status and body.
fn forward(req: &Request, upstream: u16) -> Option<(u16, String)> {
    let mut up = TcpStream::connect(("127.0.0.1", upstream)).ok()?;
    up.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let mut out = String::new();
    for (i, line) in req.head.iter().enumerate() {
        let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
        if i > 0 && name == "connection" {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    up.write_all(out.as_bytes()).ok()?;
    up.write_all(&req.body).ok()?;
    let mut raw = Vec::new();
    up.read_to_end(&mut raw).ok()?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// Shows young instances as pending in DescribeInstances, as EC2 does while booting.
fn rewrite(action: &str, text: String, state: &Mutex<ProxyState>) -> String {
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    if action == "RunInstances" {
        if let Some(id) = between(&text, "<instanceId>", "</instanceId>") {
            s.first_seen.insert(id.to_owned(), Instant::now());
        }
    }
    if action == "DescribeInstances" && !s.interrupted.is_empty() {
        return interrupted(text, &s.interrupted);
    }
    if action != "DescribeInstances" || s.pending_for.is_zero() {
        return text;
    }
    let running = "<instanceState><code>16</code><name>running</name></instanceState>";
    let pending = "<instanceState><code>0</code><name>pending</name></instanceState>";
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("<instanceId>") {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let id = between(rest, "<instanceId>", "</instanceId>").unwrap_or("");
        let young = s
            .first_seen
            .get(id)
            .is_some_and(|t| t.elapsed() < s.pending_for);
        let end = rest
            .find("</instanceState>")
            .map_or(rest.len(), |e| e + "</instanceState>".len());
        let item = &rest[..end];
        if young {
            out.push_str(&item.replace(running, pending));
        } else {
            out.push_str(item);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Shows the `ids` as terminated by a spot interruption. In moto's XML an instance's
/// state reason comes before its id and its state after, so each instance is the
/// text up to the end of its `instanceState`.
fn interrupted(text: String, ids: &HashSet<String>) -> String {
    let end_tag = "</instanceState>";
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find(end_tag) {
        let item = &rest[..at + end_tag.len()];
        rest = &rest[at + end_tag.len()..];
        let id = item
            .rfind("<instanceId>")
            .and_then(|i| between(&item[i..], "<instanceId>", "</instanceId>"))
            .unwrap_or("");
        if !ids.contains(id) {
            out.push_str(item);
            continue;
        }
        let reason = "<stateReason><code>Server.SpotInstanceTermination</code><message>Server.SpotInstanceTermination: Spot instance termination</message></stateReason>";
        let mut item = item.to_owned();
        if let Some(r) = item.rfind("<stateReason>") {
            let close = item[r..]
                .find("</stateReason>")
                .map(|e| r + e + "</stateReason>".len());
            if let Some(close) = close {
                item.replace_range(r..close, reason);
            }
        }
        if let Some(st) = item.rfind("<instanceState>") {
            item.replace_range(
                st..,
                "<instanceState><code>48</code><name>terminated</name></instanceState>",
            );
        }
        out.push_str(&item);
    }
    out.push_str(rest);
    out
}

/// Which instances the simulator boots, by launch order (1-based): those in `never`
/// stay up without a worker, like a machine whose boot hangs, unless the test releases
/// them.
#[derive(Debug, Clone, Default)]
pub struct BootPolicy {
    pub never: HashSet<usize>,
    /// Boot the stock image through its cloud-init in a chroot, instead of running
    /// the user data on the host.
    pub stock: Option<super::chroot::StockBoot>,
}

#[derive(Default)]
struct SimState {
    seen: Vec<String>,
    /// Held instances (by launch order) the test let boot after all.
    released: HashSet<usize>,
    booted: HashMap<String, Child>,
    most_alive: usize,
}

/// Boots instances from their user data. Runs until dropped; then kills them all.
pub struct Simulator {
    state: Arc<Mutex<SimState>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Simulator {
    pub fn start(moto_port: u16, dir: &Path, policy: BootPolicy) -> Simulator {
        let state = Arc::new(Mutex::new(SimState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp, dir) = (state.clone(), stop.clone(), dir.to_owned());
        std::fs::create_dir_all(&dir).expect("simulator dir");
        let thread = std::thread::spawn(move || {
            // A handle on the same server (not owned: the test owns the process).
            let moto = Api { port: moto_port };
            while !sp.load(Ordering::Relaxed) {
                if let Some(list) = moto.instances() {
                    step(&moto, &list, &st, &dir, &policy);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Simulator {
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// The most instances alive (not terminated) at one look.
    pub fn most_alive(&self) -> usize {
        self.lock().most_alive
    }

    /// How many instances it has seen.
    pub fn seen(&self) -> usize {
        self.lock().seen.len()
    }

    /// Boots the `n`th instance (1-based) after all, if the policy held it.
    pub fn release(&self, n: usize) {
        self.lock().released.insert(n);
    }

    /// Kills the worker processes of instance `id`, as a crash would.
    pub fn crash(&self, id: &str) {
        if let Some(child) = self.lock().booted.get(id) {
            kill_group(child.id());
        }
    }

    /// Whether the worker of instance `id` still runs.
    pub fn running(&self, id: &str) -> bool {
        self.lock()
            .booted
            .get_mut(id)
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for (_, mut child) in self.lock().booted.drain() {
            kill_group(child.id());
            let _ = child.wait();
        }
    }
}

/// The emulator's API, straight (not through the proxy).
#[derive(Debug, Clone, Copy)]
pub struct Api {
    port: u16,
}

impl Api {
    /// One call; the answer's XML whatever its status, `None` if nothing answered.
    pub fn call(&self, params: &[(&str, &str)]) -> Option<String> {
        let mut form: Vec<(&str, &str)> = vec![("Version", "2016-11-15")];
        form.extend_from_slice(params);
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        ureq::post(&format!("http://127.0.0.1:{}", self.port))
            .header("Authorization", AUTH)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .config()
            .http_status_as_error(false)
            .build()
            .send(body)
            .ok()?
            .body_mut()
            .read_to_string()
            .ok()
    }

    pub fn instances(&self) -> Option<Vec<CloudInstance>> {
        Some(parse_instances(
            &self.call(&[("Action", "DescribeInstances")])?,
        ))
    }

    fn user_data(&self, id: &str) -> Option<String> {
        let xml = self.call(&[
            ("Action", "DescribeInstanceAttribute"),
            ("InstanceId", id),
            ("Attribute", "userData"),
        ])?;
        let encoded = between(&xml, "<userData><value>", "</value>")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        String::from_utf8(bytes).ok()
    }
}

fn step(
    moto: &Api,
    list: &[CloudInstance],
    state: &Mutex<SimState>,
    dir: &Path,
    policy: &BootPolicy,
) {
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    let alive = list
        .iter()
        .filter(|i| i.state != "terminated" && i.state != "shutting-down")
        .count();
    s.most_alive = s.most_alive.max(alive);
    // Numbered in launch order (the API lists instances so, terminated ones included),
    // whatever state they were in when first seen.
    for i in list {
        if !s.seen.contains(&i.id) {
            s.seen.push(i.id.clone());
        }
    }
    for i in list {
        let gone = matches!(
            i.state.as_str(),
            "terminated" | "shutting-down" | "stopped" | "stopping"
        );
        if gone {
            if let Some(mut child) = s.booted.remove(&i.id) {
                kill_group(child.id());
                let _ = child.wait();
            }
            continue;
        }
        if i.state != "running" || s.booted.contains_key(&i.id) {
            continue;
        }
        let n = s
            .seen
            .iter()
            .position(|id| *id == i.id)
            .map_or(0, |at| at + 1);
        if policy.never.contains(&n) && !s.released.contains(&n) {
            continue;
        }
        let Some(script) = moto.user_data(&i.id) else {
            continue;
        };
        let home: PathBuf = dir.join(&i.id);
        let _ = std::fs::create_dir_all(&home);
        let _ = std::fs::write(home.join("user-data.sh"), &script);
        if let Some(stock) = &policy.stock {
            match stock.boot(&home, &i.id, &script) {
                Ok(child) => drop(s.booted.insert(i.id.clone(), child)),
                Err(e) => eprintln!("booting {} failed: {e}", i.id),
            }
            continue;
        }
        let Ok(log) = std::fs::File::create(home.join("boot.log")) else {
            continue;
        };
        let Ok(log2) = log.try_clone() else { continue };
        let child = std::os::unix::process::CommandExt::process_group(
            Command::new("sh")
                .arg("user-data.sh")
                .current_dir(&home)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2),
            0,
        )
        .spawn();
        if let Ok(child) = child {
            s.booted.insert(i.id.clone(), child);
        }
    }
}

fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}
