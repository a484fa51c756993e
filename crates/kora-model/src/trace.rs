//! W3C trace context for runs, without a tracing library: one trace per run, its id derived
//! from the run id (so every process, a restarted coordinator and a replay all put a run's
//! spans in the same trace without storing anything), the run's root span id likewise, and
//! the `traceparent` header that carries a span's context in NATS message headers.

/// The header carrying a span's context (W3C Trace Context).
pub const TRACEPARENT: &str = "traceparent";

/// `uuid::Uuid::new_v5` namespace of Kora's trace and span ids.
const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6b6f_7261_2d74_7261_6365_2d69_6473_0001);

/// A span's context: trace id, span id, sampled flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl TraceParent {
    /// The root span of run `run_id`: the trace every span of the run belongs to.
    pub fn of_run(run_id: &str) -> TraceParent {
        TraceParent {
            trace_id: run_trace_id(run_id),
            span_id: run_root_span_id(run_id),
            sampled: true,
        }
    }

    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; `None` for anything else (an all-zero id too).
    pub fn parse(header: &str) -> Option<TraceParent> {
        let mut parts = header.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || version == "ff" || trace.len() != 32 || span.len() != 16 {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        hex(trace, &mut trace_id)?;
        hex(span, &mut span_id)?;
        let mut f = [0u8; 1];
        hex(flags, &mut f)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            span_id,
            sampled: f[0] & 1 == 1,
        })
    }

    pub fn header(&self) -> String {
        let mut s = String::with_capacity(55);
        s.push_str("00-");
        for b in self.trace_id {
            s.push_str(&format!("{b:02x}"));
        }
        s.push('-');
        for b in self.span_id {
            s.push_str(&format!("{b:02x}"));
        }
        s.push_str(if self.sampled { "-01" } else { "-00" });
        s
    }
}

/// The trace id of run `run_id`.
pub fn run_trace_id(run_id: &str) -> [u8; 16] {
    *uuid::Uuid::new_v5(&NAMESPACE, format!("trace:{run_id}").as_bytes()).as_bytes()
}

/// The trace id of run `run_id` as 32 hex digits, as logs and tracing tools show it.
pub fn run_trace_hex(run_id: &str) -> String {
    run_trace_id(run_id)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The span id of run `run_id`'s root span.
pub fn run_root_span_id(run_id: &str) -> [u8; 8] {
    let b = uuid::Uuid::new_v5(&NAMESPACE, format!("root:{run_id}").as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&b.as_bytes()[..8]);
    if id == [0; 8] {
        id[7] = 1;
    }
    id
}

fn hex(s: &str, out: &mut [u8]) -> Option<()> {
    if s.len() != out.len() * 2 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_rejects_bad_headers() {
        let h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = TraceParent::parse(h).unwrap();
        assert!(t.sampled);
        assert_eq!(t.header(), h);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_run_has_one_trace_whoever_asks() {
        let a = TraceParent::of_run("0193a7c2-0000-7000-8000-000000000001");
        assert_eq!(
            a,
            TraceParent::of_run("0193a7c2-0000-7000-8000-000000000001")
        );
        assert_ne!(a.trace_id, TraceParent::of_run("other").trace_id);
        assert_eq!(TraceParent::parse(&a.header()), Some(a));
    }
}
