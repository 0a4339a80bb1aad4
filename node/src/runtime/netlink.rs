//! The rtnetlink requests of pod networking, on a synchronous `NETLINK_ROUTE` socket
//! (netlink-sys) with the message types of netlink-packet-route: what `ip link`, `ip addr`,
//! `ip route`, `ip neigh` and `ip netns` did for the process runtime, without a process each.
//!
//! A socket acts in the network namespace it was opened in. [`new_namespace`] makes a named
//! namespace the way `ip netns add` does (unshare on a thread of its own, whose namespace is
//! then bind-mounted under `/run/netns`) and opens that namespace's socket on the same thread
//! before it ends, so no thread of the runtime ever changes namespace and no `unsafe` is
//! needed. Every request asks for an acknowledgement and its error comes back as the kernel's
//! errno ([`std::io::Error`]).

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// A `NETLINK_ROUTE` socket of one network namespace.
#[derive(Debug)]
pub struct Netlink(Socket);

/// The loopback's index: 1 in every network namespace.
const LOOPBACK: u32 = 1;

fn context(what: &str) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl Netlink {
    /// A socket in this thread's network namespace.
    pub fn open() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink(socket))
    }

    /// Sends `message` with `flags` (plus request and ack) and waits for its acknowledgement;
    /// returns the messages answered before it (a get's answer).
    fn request(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        self.0.send(&out, 0)?;
        let mut answers = Vec::new();
        loop {
            let (datagram, _) = self.0.recv_from_full()?;
            let mut at = 0;
            while at < datagram.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&datagram[at..])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = reply.header.length as usize;
                match reply.payload {
                    // An error with code 0 is the acknowledgement.
                    NetlinkPayload::Error(e) if e.code.is_none() => return Ok(answers),
                    NetlinkPayload::Error(e) => return Err(e.to_io()),
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::InnerMessage(m) => answers.push(m),
                    _ => {}
                }
                if len == 0 {
                    break;
                }
                at += len.next_multiple_of(4);
            }
        }
    }

    /// The index of the link `name`.
    pub fn index(&self, name: &str) -> io::Result<u32> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.into()));
        self.request(RouteNetlinkMessage::GetLink(m), 0)
            .map_err(context(&format!("finding link {name}")))?
            .into_iter()
            .find_map(|a| match a {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("link {name}")))
    }

    /// `ip link add NAME address MAC type bridge` and up.
    pub fn add_bridge(&self, name: &str, mac: [u8; 6]) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        m.attributes.push(LinkAttribute::IfName(name.into()));
        m.attributes.push(LinkAttribute::Address(mac.to_vec()));
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.request(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
            .map_err(context(&format!("adding bridge {name}")))
            .map(drop)
    }

    /// `ip link add HOST master MASTER up type veth peer name PEER netns NETNS`: `HOST` up on
    /// the bridge `master`, `PEER` (still down) in the namespace mounted at `netns`.
    pub fn add_veth(&self, host: &str, master: u32, peer: &str, netns: &Path) -> io::Result<()> {
        let ns = std::fs::File::open(netns).map_err(context(&netns.display().to_string()))?;
        // The peer is set up from its own namespace ([`Netlink::up`]): asking for it here
        // fails with ENOTCONN (as `ip link add … peer … netns NS up` does).
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName(peer.into()));
        p.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        let mut m = LinkMessage::default();
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        m.attributes.push(LinkAttribute::IfName(host.into()));
        m.attributes.push(LinkAttribute::Controller(master));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
        ]));
        self.request(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
            .map_err(context(&format!("adding veth {host}")))
            .map(drop)
    }

    /// `ip link set dev INDEX up`.
    pub fn up(&self, index: u32) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::NewLink(m), 0)
            .map_err(context(&format!("setting link {index} up")))
            .map(drop)
    }

    /// `ip link set lo up`.
    pub fn loopback_up(&self) -> io::Result<()> {
        self.up(LOOPBACK)
    }

    /// `ip link del NAME`.
    pub fn delete_link(&self, name: &str) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.into()));
        self.request(RouteNetlinkMessage::DelLink(m), 0)
            .map_err(context(&format!("deleting link {name}")))
            .map(drop)
    }

    /// `ip addr replace ADDR/PREFIX dev INDEX`.
    pub fn replace_address(&self, index: u32, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(IpAddr::V4(addr)));
        m.attributes
            .push(AddressAttribute::Address(IpAddr::V4(addr)));
        self.request(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map_err(context(&format!("adding address {addr}/{prefix}")))
        .map(drop)
    }

    /// `ip route add default via GATEWAY`.
    pub fn add_default_route(&self, gateway: Ipv4Addr) -> io::Result<()> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        self.request(RouteNetlinkMessage::NewRoute(m), NLM_F_CREATE | NLM_F_EXCL)
            .map_err(context(&format!("adding the default route via {gateway}")))
            .map(drop)
    }

    /// `ip neigh del ADDR dev INDEX`; an entry that is not there is no error.
    pub fn forget_neighbour(&self, index: u32, addr: Ipv4Addr) -> io::Result<()> {
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.ifindex = index;
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                addr,
            )));
        match self.request(RouteNetlinkMessage::DelNeighbour(m), 0) {
            Err(e) if e.raw_os_error() == Some(libc_enoent()) => Ok(()),
            r => r
                .map_err(context(&format!("forgetting neighbour {addr}")))
                .map(drop),
        }
    }
}

fn libc_enoent() -> i32 {
    nix::errno::Errno::ENOENT as i32
}

/// Where `ip netns` keeps named network namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Makes [`NETNS_DIR`] a shared mount point, as `ip netns add` does, so that a namespace
/// mounted there later is seen from other mount namespaces too (`ip netns exec` makes one).
pub fn prepare_netns_dir() -> io::Result<()> {
    use nix::mount::{MsFlags, mount};
    std::fs::create_dir_all(NETNS_DIR).map_err(context(NETNS_DIR))?;
    let shared = || {
        mount(
            Some("none"),
            NETNS_DIR,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Err(nix::errno::Errno::EINVAL) => {
            // Not a mount point yet: bind it onto itself first.
            mount(
                Some(NETNS_DIR),
                NETNS_DIR,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )?;
            shared()?;
        }
        r => r?,
    }
    Ok(())
}

/// `ip netns add NAME`: a new network namespace, bind-mounted at `/run/netns/NAME`; returns a
/// socket in it. The namespace is made on a thread of its own that ends right after.
pub fn new_namespace(name: &str) -> io::Result<Netlink> {
    use nix::mount::{MsFlags, mount};
    use nix::sched::{CloneFlags, unshare};
    let path = Path::new(NETNS_DIR).join(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(context(&path.display().to_string()))?;
    let target = path.clone();
    let made = std::thread::spawn(move || -> io::Result<Netlink> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| context("unshare")(e.into()))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            Some("none"),
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| context("mounting the namespace")(e.into()))?;
        Netlink::open()
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")));
    if made.is_err() {
        let _ = delete_namespace(name);
    }
    made.map_err(context(&format!("netns {name}")))
}

/// `ip netns del NAME`: unmounts and removes `/run/netns/NAME` (the namespace goes with its
/// last process).
pub fn delete_namespace(name: &str) -> io::Result<()> {
    let path = Path::new(NETNS_DIR).join(name);
    let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
    std::fs::remove_file(&path).map_err(context(&format!("netns {name}")))
}
