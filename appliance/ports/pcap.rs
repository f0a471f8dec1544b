//! pcap backend: replays a capture per input port and writes a capture per
//! output port, so a run is reproducible from files alone (fixtures,
//! regression captures, offline replays of a site's traffic).
//!
//! What it owns and promises:
//! - RX queue 0 of a port with `pcap_in` streams that capture (classic pcap,
//!   Ethernet link type) in capture order; the file is read through a bounded
//!   buffer, never loaded whole. Every other RX queue is always empty.
//! - A frame larger than [`DATA_ROOM`] is skipped and counted `oversize`.
//! - A buffer is taken from the pool *before* the next record is read, so an
//!   exhausted pool (`rx_nombuf`) ends the burst without consuming a record:
//!   the same frame is delivered by a later call, nothing is lost.
//! - A record the reader cannot parse (a capture cut short mid-record, a
//!   corrupt record header) ends that port's input and is counted
//!   `read_errors`; frames before it were delivered.
//! - TX queues of a port with `pcap_out` append every frame to that port's
//!   capture (Ethernet link type). The queues of one port share the writer
//!   behind a `Mutex`, which is fine at capture-writing speed; the capture is
//!   flushed when the last TX queue of the port is dropped. TX queues of a
//!   port without `pcap_out` take and free every frame, counting `discarded`.
//! - [`PcapControl::input_done`] turns true once every `pcap_in` capture has
//!   been read to its end (or to its first unreadable record).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};
use pipelines::packet::buf::DATA_ROOM;
use pipelines::{BufPool, Burst, Counter, HeapBuf, HeapPool, PacketBuf};
use serde_json::{json, Map, Value};

use super::{BackendControl, PortQueues, RxQueue, TxQueue};
use crate::config::plan::Plan;

/// Snap length written in output captures: every frame fits whole.
const OUT_SNAPLEN: u32 = 65_535;

/// Counters of one port. Each counter has one writer at a time: the RX
/// counters belong to the thread of RX queue 0, `frames_written` and
/// `write_errors` are written under the output's mutex (or by its `Drop`),
/// and each TX queue has its own `discarded` counter.
struct PortStats {
    name: String,
    has_input: bool,
    frames_read: Counter,
    oversize: Counter,
    rx_nombuf: Counter,
    read_errors: Counter,
    input_done: AtomicBool,
    frames_written: Counter,
    write_errors: Counter,
    /// One per TX queue.
    discarded: Vec<Counter>,
    /// The first read or write error, for the operator.
    first_error: Mutex<Option<String>>,
}

impl PortStats {
    fn note_error(&self, msg: String) {
        let mut slot = self
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(msg);
        }
    }

    fn discarded(&self) -> u64 {
        self.discarded.iter().map(Counter::get).sum()
    }

    fn json(&self) -> Value {
        json!({
            "frames_read": self.frames_read.get(),
            "frames_written": self.frames_written.get(),
            "oversize": self.oversize.get(),
            "rx_nombuf": self.rx_nombuf.get(),
            "read_errors": self.read_errors.get(),
            "write_errors": self.write_errors.get(),
            "discarded": self.discarded(),
            "input_done": !self.has_input || self.input_done.load(Ordering::Acquire),
            "error": *self.first_error.lock().unwrap_or_else(PoisonError::into_inner),
        })
    }
}

/// The pcap backend's view for the runtime: end of input and counters.
pub struct PcapControl {
    ports: Vec<Arc<PortStats>>,
}

impl BackendControl for PcapControl {
    fn input_done(&self) -> bool {
        self.ports
            .iter()
            .filter(|p| p.has_input)
            .all(|p| p.input_done.load(Ordering::Acquire))
    }

    fn stats(&self) -> Value {
        let total = |f: fn(&PortStats) -> u64| -> u64 { self.ports.iter().map(|p| f(p)).sum() };
        let ports: Map<String, Value> = self
            .ports
            .iter()
            .map(|p| (p.name.clone(), p.json()))
            .collect();
        json!({
            "frames_read": total(|p| p.frames_read.get()),
            "frames_written": total(|p| p.frames_written.get()),
            "oversize": total(|p| p.oversize.get()),
            "rx_nombuf": total(|p| p.rx_nombuf.get()),
            "read_errors": total(|p| p.read_errors.get()),
            "write_errors": total(|p| p.write_errors.get()),
            "discarded": total(PortStats::discarded),
            "input_done": self.input_done(),
            "ports": ports,
        })
    }
}

/// Opens every port's captures and builds its queues: one [`PortQueues`]
/// per `plan.ports` entry, with `plan.rx_queues` RX and `plan.tx_queues` TX
/// queues. Errors name the port, the field and the file.
pub fn open(
    plan: &Plan,
    pool: &'static HeapPool,
) -> Result<(Vec<PortQueues<HeapBuf>>, Arc<PcapControl>), String> {
    check_paths(plan)?;
    let rx_queues = plan.rx_queues.max(1);
    let tx_queues = plan.tx_queues.max(1);
    let mut all_queues = Vec::with_capacity(plan.ports.len());
    let mut all_stats = Vec::with_capacity(plan.ports.len());
    for (index, port) in plan.ports.iter().enumerate() {
        let port_id =
            u16::try_from(index).map_err(|_| format!("port `{}`: too many ports", port.name))?;
        let stats = Arc::new(PortStats {
            name: port.name.clone(),
            has_input: port.pcap_in.is_some(),
            frames_read: Counter::new(),
            oversize: Counter::new(),
            rx_nombuf: Counter::new(),
            read_errors: Counter::new(),
            input_done: AtomicBool::new(false),
            frames_written: Counter::new(),
            write_errors: Counter::new(),
            discarded: (0..tx_queues).map(|_| Counter::new()).collect(),
            first_error: Mutex::new(None),
        });

        let mut rx: Vec<Box<dyn RxQueue<HeapBuf>>> = Vec::with_capacity(rx_queues);
        match &port.pcap_in {
            Some(path) => {
                let reader = open_input(&port.name, path)?;
                rx.push(Box::new(CaptureRx {
                    port: port_id,
                    reader: Some(reader),
                    path: path.clone(),
                    pool,
                    stats: Arc::clone(&stats),
                }));
            }
            None => rx.push(Box::new(EmptyRx)),
        }
        while rx.len() < rx_queues {
            rx.push(Box::new(EmptyRx));
        }

        let output = match &port.pcap_out {
            Some(path) => Some(Arc::new(Mutex::new(open_output(
                &port.name,
                path,
                Arc::clone(&stats),
            )?))),
            None => None,
        };
        let tx: Vec<Box<dyn TxQueue<HeapBuf>>> = (0..tx_queues)
            .map(|queue| -> Box<dyn TxQueue<HeapBuf>> {
                match &output {
                    Some(out) => Box::new(CaptureTx {
                        output: Arc::clone(out),
                    }),
                    None => Box::new(DiscardTx {
                        queue,
                        stats: Arc::clone(&stats),
                    }),
                }
            })
            .collect();

        all_queues.push(PortQueues { rx, tx });
        all_stats.push(stats);
    }
    Ok((all_queues, Arc::new(PcapControl { ports: all_stats })))
}

/// Refuses a plan whose outputs would overwrite an input or each other.
fn check_paths(plan: &Plan) -> Result<(), String> {
    let identity = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let inputs: Vec<(&str, PathBuf)> = plan
        .ports
        .iter()
        .filter_map(|p| Some((p.name.as_str(), identity(p.pcap_in.as_deref()?))))
        .collect();
    let mut outputs: Vec<(&str, PathBuf)> = Vec::new();
    for port in &plan.ports {
        let Some(out) = port.pcap_out.as_deref() else {
            continue;
        };
        let out_id = identity(out);
        if let Some((owner, _)) = inputs.iter().find(|(_, i)| *i == out_id) {
            return Err(format!(
                "port `{}`: pcap_out `{}` is the pcap_in of port `{owner}`; writing it would destroy the input",
                port.name,
                out.display()
            ));
        }
        if let Some((owner, _)) = outputs.iter().find(|(_, o)| *o == out_id) {
            return Err(format!(
                "port `{}`: pcap_out `{}` is also the pcap_out of port `{owner}`; give each port its own file",
                port.name,
                out.display()
            ));
        }
        outputs.push((port.name.as_str(), out_id));
    }
    Ok(())
}

fn open_input(port: &str, path: &Path) -> Result<PcapReader<File>, String> {
    let what = || format!("port `{port}`: pcap_in `{}`", path.display());
    let file = File::open(path).map_err(|e| format!("{}: cannot open: {e}", what()))?;
    let reader = PcapReader::new(file).map_err(|e| {
        format!(
            "{}: not a readable classic pcap capture ({e}); pcapng is not supported, convert it with `editcap -F pcap IN OUT`",
            what()
        )
    })?;
    let link = reader.header().datalink;
    if link != DataLink::ETHERNET {
        return Err(format!(
            "{}: link type {link:?} ({}); only Ethernet captures (LINKTYPE_ETHERNET, 1) are supported",
            what(),
            u32::from(link)
        ));
    }
    Ok(reader)
}

fn open_output(port: &str, path: &Path, stats: Arc<PortStats>) -> Result<CaptureOutput, String> {
    let what = || format!("port `{port}`: pcap_out `{}`", path.display());
    let file = File::create(path).map_err(|e| format!("{}: cannot create: {e}", what()))?;
    let header = PcapHeader {
        snaplen: OUT_SNAPLEN,
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::MicroSecond,
        endianness: Endianness::native(),
        ..PcapHeader::default()
    };
    let writer = PcapWriter::with_header(BufWriter::new(file), header)
        .map_err(|e| format!("{}: cannot write the capture header: {e}", what()))?;
    Ok(CaptureOutput {
        writer: Some(writer),
        path: path.to_path_buf(),
        stats,
    })
}

/// RX queue 0 of a port with `pcap_in`.
struct CaptureRx {
    port: u16,
    /// `None` once the capture is exhausted.
    reader: Option<PcapReader<File>>,
    path: PathBuf,
    pool: &'static HeapPool,
    stats: Arc<PortStats>,
}

/// Outcome of reading the next deliverable record into a buffer.
enum NextFrame {
    Filled,
    End,
    Unreadable(String),
}

impl CaptureRx {
    /// Reads records until one fits the data room (skipping and counting the
    /// oversize ones) and copies it into `buf`.
    fn read_into(reader: &mut PcapReader<File>, buf: &mut HeapBuf, stats: &PortStats) -> NextFrame {
        loop {
            match reader.next_raw_packet() {
                None => return NextFrame::End,
                Some(Err(e)) => return NextFrame::Unreadable(e.to_string()),
                Some(Ok(record)) => {
                    if record.data.len() > DATA_ROOM {
                        stats.oversize.inc();
                        continue;
                    }
                    buf.fill(&record.data);
                    return NextFrame::Filled;
                }
            }
        }
    }

    fn finish(&mut self) {
        self.reader = None;
        self.stats.input_done.store(true, Ordering::Release);
    }
}

impl RxQueue<HeapBuf> for CaptureRx {
    fn rx_burst(&mut self, out: &mut Burst<HeapBuf>, max: usize) -> usize {
        let want = max.min(out.remaining_capacity());
        let mut n = 0;
        while n < want {
            let Some(reader) = self.reader.as_mut() else {
                break;
            };
            // The buffer comes first: if the pool is empty the record stays
            // unread and is delivered by a later call.
            let Some(mut buf) = self.pool.alloc() else {
                self.stats.rx_nombuf.inc();
                break;
            };
            match Self::read_into(reader, &mut buf, &self.stats) {
                NextFrame::Filled => {
                    buf.meta_mut().in_port = self.port;
                    out.push(buf);
                    self.stats.frames_read.inc();
                    n += 1;
                }
                NextFrame::End => self.finish(),
                NextFrame::Unreadable(e) => {
                    self.stats.read_errors.inc();
                    self.stats.note_error(format!(
                        "pcap_in `{}`: unreadable record after frame {}: {e}; input ends here",
                        self.path.display(),
                        self.stats.frames_read.get()
                    ));
                    self.finish();
                }
            }
        }
        n
    }
}

/// An RX queue with nothing to receive.
struct EmptyRx;

impl RxQueue<HeapBuf> for EmptyRx {
    fn rx_burst(&mut self, _out: &mut Burst<HeapBuf>, _max: usize) -> usize {
        0
    }
}

/// The output capture of one port, shared by its TX queues.
struct CaptureOutput {
    /// `Some` until `Drop` flushes it.
    writer: Option<PcapWriter<BufWriter<File>>>,
    path: PathBuf,
    stats: Arc<PortStats>,
}

impl CaptureOutput {
    fn write(&mut self, timestamp: Duration, frame: &[u8]) {
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        // A frame never exceeds the headroom plus data room of a buffer, far
        // below the u32 range and the snap length.
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        match writer.write_packet(&PcapPacket::new(timestamp, len, frame)) {
            Ok(_) => self.stats.frames_written.inc(),
            Err(e) => {
                self.stats.write_errors.inc();
                self.stats
                    .note_error(format!("pcap_out `{}`: {e}", self.path.display()));
            }
        }
    }
}

impl Drop for CaptureOutput {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            if let Err(e) = writer.into_writer().flush() {
                self.stats.write_errors.inc();
                self.stats
                    .note_error(format!("pcap_out `{}`: flush: {e}", self.path.display()));
            }
        }
    }
}

/// A TX queue of a port with `pcap_out`.
struct CaptureTx {
    output: Arc<Mutex<CaptureOutput>>,
}

impl TxQueue<HeapBuf> for CaptureTx {
    fn tx_burst(&mut self, pkts: &mut Burst<HeapBuf>) -> usize {
        let n = pkts.len();
        if n == 0 {
            return 0;
        }
        // Wall-clock time, read once per burst, as a capture on a wire would have.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut out = self.output.lock().unwrap_or_else(PoisonError::into_inner);
        for pkt in pkts.drain(..) {
            out.write(now, pkt.data());
        }
        n
    }
}

/// A TX queue of a port without `pcap_out`: takes, frees and counts.
struct DiscardTx {
    queue: usize,
    stats: Arc<PortStats>,
}

impl TxQueue<HeapBuf> for DiscardTx {
    fn tx_burst(&mut self, pkts: &mut Burst<HeapBuf>) -> usize {
        let n = pkts.len();
        pkts.clear();
        if let Some(c) = self.stats.discarded.get(self.queue) {
            c.add(n as u64);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::config::plan::{self, Plan};

    /// Writes a classic pcap with `link` and `frames` to `path`.
    fn write_capture(path: &Path, link: DataLink, frames: &[Vec<u8>]) {
        let header = PcapHeader {
            datalink: link,
            ..PcapHeader::default()
        };
        let mut w = PcapWriter::with_header(File::create(path).unwrap(), header).unwrap();
        for (i, f) in frames.iter().enumerate() {
            let ts = Duration::from_millis(i as u64);
            w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
                .unwrap();
        }
    }

    /// Every frame of the capture at `path`, and its link type.
    fn read_capture(path: &Path) -> (DataLink, Vec<Vec<u8>>) {
        let mut r = PcapReader::new(File::open(path).unwrap()).unwrap();
        let link = r.header().datalink;
        let mut frames = Vec::new();
        while let Some(p) = r.next_packet() {
            frames.push(p.unwrap().data.into_owned());
        }
        (link, frames)
    }

    /// A frame whose bytes name it: `len` bytes of `tag`.
    fn frame(tag: u8, len: usize) -> Vec<u8> {
        vec![tag; len]
    }

    /// A pcap-backend plan with a LAN port (`lan_in`, `lan_out`) and an
    /// uplink port (`wan_out`).
    fn plan(lan_in: &Path, lan_out: Option<&Path>, wan_out: Option<&Path>) -> Plan {
        let mut site = config::site::SiteToml::one_uplink("pcap", &["192.0.2.1"])
            .lan_key("pcap_in", lan_in.to_str().unwrap());
        if let Some(p) = lan_out {
            site = site.lan_key("pcap_out", p.to_str().unwrap());
        }
        if let Some(p) = wan_out {
            site = site.port_key("wan", "pcap_out", p.to_str().unwrap());
        }
        let text = site.to_string();
        let cfg = config::parse(&text).unwrap();
        plan::validate_with_cpus(&cfg, 1).unwrap()
    }

    fn drain(q: &mut dyn RxQueue<HeapBuf>, max: usize) -> Vec<HeapBuf> {
        let mut burst = Burst::new();
        q.rx_burst(&mut burst, max);
        burst.into_iter().collect()
    }

    #[test]
    fn replays_in_order_skips_oversize_and_ends() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.pcap");
        let frames = vec![
            frame(1, 60),
            frame(2, DATA_ROOM + 1),
            frame(3, 0),
            frame(4, DATA_ROOM),
            frame(5, 9000),
            frame(6, 14),
        ];
        write_capture(&input, DataLink::ETHERNET, &frames);
        let mut p = plan(&input, None, None);
        p.rx_queues = 2;
        let pool = HeapPool::new_static(64);
        let (mut ports, control) = open(&p, pool).unwrap();
        assert_eq!(ports.len(), 2);
        assert!(ports
            .iter()
            .all(|q| q.rx.len() == 2 && q.tx.len() == p.tx_queues));
        assert!(!control.input_done());

        // `max` and the burst's remaining capacity both bound a call.
        let first = drain(ports[0].rx[0].as_mut(), 1);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].data(), &frame(1, 60)[..]);
        let mut burst: Burst<HeapBuf> = Burst::new();
        while !burst.is_full() {
            burst.push(pool.alloc().unwrap());
        }
        assert_eq!(ports[0].rx[0].rx_burst(&mut burst, 32), 0);
        drop(burst);

        let rest = drain(ports[0].rx[0].as_mut(), 32);
        let got: Vec<(u8, usize)> = rest
            .iter()
            .map(|b| (b.data().first().copied().unwrap_or(3), b.data().len()))
            .collect();
        assert_eq!(got, vec![(3, 0), (4, DATA_ROOM), (6, 14)]);
        assert!(rest.iter().chain(&first).all(|b| b.meta().in_port == 0));
        assert!(control.input_done());
        assert!(drain(ports[0].rx[0].as_mut(), 32).is_empty());
        // Other queues and ports without pcap_in receive nothing.
        assert!(drain(ports[0].rx[1].as_mut(), 32).is_empty());
        assert!(drain(ports[1].rx[0].as_mut(), 32).is_empty());

        let s = control.stats();
        assert_eq!(s["frames_read"], 4);
        assert_eq!(s["oversize"], 2);
        assert_eq!(s["rx_nombuf"], 0);
        assert_eq!(s["read_errors"], 0);
        assert_eq!(s["ports"]["lan"]["frames_read"], 4);
        assert_eq!(s["input_done"], true);
    }

    #[test]
    fn exhausted_pool_delays_a_frame_but_never_loses_it() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.pcap");
        let frames: Vec<Vec<u8>> = (1..=5).map(|t| frame(t, 60 + usize::from(t))).collect();
        write_capture(&input, DataLink::ETHERNET, &frames);
        let p = plan(&input, None, None);
        let pool = HeapPool::new_static(2);
        let (mut ports, control) = open(&p, pool).unwrap();
        let rx = ports[0].rx[0].as_mut();

        let mut seen = Vec::new();
        let mut turns = 0;
        while !control.input_done() {
            turns += 1;
            assert!(turns < 100, "replay did not finish");
            let got = drain(rx, 32);
            assert!(got.len() <= 2);
            seen.extend(got.iter().map(|b| b.data().to_vec()));
            // `got` is dropped here: its buffers go back to the pool.
        }
        assert_eq!(seen, frames);
        let s = control.stats();
        assert_eq!(s["frames_read"], 5);
        assert!(s["rx_nombuf"].as_u64().unwrap() >= 2, "{s}");
    }

    #[test]
    fn tx_writes_ethernet_capture_shared_by_queues_and_discards_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.pcap");
        let output = dir.path().join("wan.pcap");
        write_capture(&input, DataLink::ETHERNET, &[]);
        let mut p = plan(&input, None, Some(&output));
        p.tx_queues = 2;
        let pool = HeapPool::new_static(16);
        let (ports, control) = open(&p, pool).unwrap();
        let mut ports = ports;

        let mut burst: Burst<HeapBuf> = Burst::new();
        burst.push(pool.alloc_with(&frame(7, 64)).unwrap());
        burst.push(pool.alloc_with(&frame(8, 1514)).unwrap());
        assert_eq!(ports[1].tx[0].tx_burst(&mut burst), 2);
        assert!(burst.is_empty());
        burst.push(pool.alloc_with(&frame(9, 60)).unwrap());
        assert_eq!(ports[1].tx[1].tx_burst(&mut burst), 1);
        assert_eq!(ports[1].tx[1].tx_burst(&mut burst), 0);

        // The LAN port has no pcap_out: frames are taken, freed and counted.
        burst.push(pool.alloc_with(&frame(1, 60)).unwrap());
        burst.push(pool.alloc_with(&frame(2, 60)).unwrap());
        assert_eq!(ports[0].tx[1].tx_burst(&mut burst), 2);
        assert!(burst.is_empty());
        assert_eq!(
            pool.in_use(),
            0,
            "every transmitted buffer went back to the pool"
        );

        let s = control.stats();
        assert_eq!(s["frames_written"], 3);
        assert_eq!(s["discarded"], 2);
        assert_eq!(s["ports"]["wan"]["frames_written"], 3);
        assert_eq!(s["ports"]["lan"]["discarded"], 2);
        assert_eq!(s["input_done"], false, "the empty capture was not read yet");
        assert!(drain(ports[0].rx[0].as_mut(), 32).is_empty());
        assert!(control.input_done());

        drop(ports);
        let (link, written) = read_capture(&output);
        assert_eq!(link, DataLink::ETHERNET);
        assert_eq!(written, vec![frame(7, 64), frame(8, 1514), frame(9, 60)]);
        assert_eq!(control.stats()["write_errors"], 0);
    }

    #[test]
    fn truncated_capture_delivers_what_precedes_the_cut() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.pcap");
        write_capture(&input, DataLink::ETHERNET, &[frame(1, 60), frame(2, 100)]);
        let bytes = std::fs::read(&input).unwrap();
        // Cut the second record in the middle of its data.
        std::fs::write(&input, &bytes[..bytes.len() - 40]).unwrap();
        let p = plan(&input, None, None);
        let (mut ports, control) = open(&p, HeapPool::new_static(8)).unwrap();
        let got = drain(ports[0].rx[0].as_mut(), 32);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].data(), &frame(1, 60)[..]);
        assert!(control.input_done());
        let s = control.stats();
        assert_eq!(s["read_errors"], 1);
        assert!(
            s["ports"]["lan"]["error"]
                .as_str()
                .unwrap()
                .contains("in.pcap"),
            "{s}"
        );
    }

    #[test]
    fn open_errors_name_the_port_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let pool = HeapPool::new_static(4);
        let err = |p: &Plan| match open(p, pool) {
            Ok(_) => panic!("open succeeded"),
            Err(e) => e,
        };

        let missing = dir.path().join("missing.pcap");
        let e = err(&plan(&missing, None, None));
        assert!(
            e.contains("port `lan`") && e.contains("pcap_in") && e.contains("missing.pcap"),
            "{e}"
        );

        let raw_ip = dir.path().join("raw.pcap");
        write_capture(&raw_ip, DataLink::IPV4, &[frame(0x45, 20)]);
        let e = err(&plan(&raw_ip, None, None));
        assert!(
            e.contains("port `lan`") && e.contains("raw.pcap") && e.contains("link type"),
            "{e}"
        );

        let garbage = dir.path().join("garbage.pcap");
        std::fs::write(&garbage, b"this is not a capture at all, not even close").unwrap();
        let e = err(&plan(&garbage, None, None));
        assert!(
            e.contains("port `lan`") && e.contains("garbage.pcap") && e.contains("pcap"),
            "{e}"
        );

        let good = dir.path().join("good.pcap");
        write_capture(&good, DataLink::ETHERNET, &[frame(1, 60)]);
        let e = err(&plan(&good, None, Some(&good)));
        assert!(
            e.contains("port `wan`") && e.contains("would destroy the input"),
            "{e}"
        );
        assert_eq!(
            read_capture(&good).1,
            vec![frame(1, 60)],
            "the input was not touched"
        );

        let out = dir.path().join("out.pcap");
        let e = err(&plan(&good, Some(&out), Some(&out)));
        assert!(
            e.contains("port `wan`") && e.contains("also the pcap_out of port `lan`"),
            "{e}"
        );

        let no_dir = dir.path().join("no/such/dir/out.pcap");
        let e = err(&plan(&good, None, Some(&no_dir)));
        assert!(
            e.contains("port `wan`") && e.contains("pcap_out") && e.contains("out.pcap"),
            "{e}"
        );
    }
}
