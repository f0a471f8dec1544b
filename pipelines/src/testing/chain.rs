//! classify → replicate → translate over the test site ([`super::site`]),
//! one frame at a time: the rig the race and window tests drive. Tests add
//! their own reads of it in `impl` blocks beside them.

use std::sync::Arc;

use crate::nat::NatConfig;
use crate::packet::buf::HeapBuf;
use crate::packet::burst::Burst;
use crate::packet::time::Nanos;
use crate::select::policy::SelectionPolicy;
use crate::stages::classify::Classify;
use crate::stages::replicate::Replicate;
use crate::stages::translate::Translate;

pub struct Chain {
    pub classify: Classify,
    pub replicate: Replicate,
    pub translate: Translate,
}

impl Chain {
    /// The three stages of shard 0 of `site(1)` under `policy`.
    pub fn new(policy: SelectionPolicy) -> Chain {
        let topo = super::site(1);
        let policy = Arc::new(policy);
        Chain {
            classify: Classify::new(topo.clone()),
            replicate: Replicate::with_policy(topo.clone(), policy.clone()),
            translate: Translate::with_policy(topo, 0, NatConfig::default(), policy),
        }
    }

    /// Runs one frame received on `port` through the three stages; returns
    /// what translate lets out.
    pub fn send(&mut self, frame: &[u8], port: u16, now: Nanos) -> Vec<HeapBuf> {
        let mut input: Burst<HeapBuf> = Burst::new();
        input.push(super::buf(frame, port));
        let mut classified = Burst::new();
        self.classify.process(&mut input, &mut classified);
        let mut out = Vec::new();
        while !classified.is_empty() {
            let mut replicated = Burst::new();
            self.replicate
                .process(now, &mut classified, &mut replicated);
            while !replicated.is_empty() || self.translate.fragments_ready() {
                let mut translated = Burst::new();
                self.translate
                    .process(now, &mut replicated, &mut translated);
                out.extend(translated.drain(..));
            }
        }
        out
    }
}
