//! The workload generators, one per kind: each is a state machine that yields the next
//! operation of its phase given the previous one's result, touches memory through the
//! [`Verifier`], and, when asked to stop, releases what it mapped and ends.

use std::collections::VecDeque;

use mm_sim::workload::{
    Op, OpResult, MADV_DONTNEED, MAP_ANONYMOUS, MAP_NORESERVE, MAP_PRIVATE, PROT_READ, PROT_WRITE,
};
use mm_types::VirtAddr;

use super::rng::Rng;
use super::verify::{Verifier, PAGE};
use super::zipf::Zipf;
use super::Task;
use crate::process::{Pattern, Touch};

/// `PROT_READ | PROT_WRITE`.
const RW: u32 = PROT_READ | PROT_WRITE;
/// `PROT_NONE`.
const PROT_NONE: u32 = 0;
/// `MAP_PRIVATE | MAP_ANONYMOUS`.
const ANON: u32 = MAP_PRIVATE | MAP_ANONYMOUS;
/// glibc's `M_MMAP_THRESHOLD` default: requests this big or bigger are mmapped.
pub(crate) const MMAP_THRESHOLD: u64 = 128 * 1024;
/// glibc's `M_TOP_PAD` default: extra heap asked for on each growth.
const TOP_PAD: u64 = 128 * 1024;
/// glibc's `M_TRIM_THRESHOLD` default: free heap top beyond this is given back.
const TRIM_THRESHOLD: u64 = 128 * 1024;
/// glibc's `HEAP_MAX_SIZE` on 64-bit: the reservation of a non-main arena.
pub(crate) const ARENA_SIZE: u64 = 64 * 1024 * 1024;
/// malloc's alignment.
const ALIGN: u64 = 16;
/// Largest single allocation of the `malloc` workload.
const MAX_ALLOC: u64 = 1024 * 1024;
/// Pages touched right after an allocation, at most (spread over the chunk).
const ALLOC_TOUCHES: u64 = 16;

/// What a generator shares with its task: its random stream, its verifier and which thread of
/// its process it is.
#[derive(Debug, Clone)]
pub(crate) struct Cx {
    pub(crate) rng: Rng,
    pub(crate) verify: Verifier,
    pub(crate) thread: u32,
}

/// Rounds `x` up to a multiple of `to` (a power of two).
fn align_up(x: u64, to: u64) -> u64 {
    x.div_ceil(to) * to
}

/// A load or store of the page holding an address, queued for a later operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Load(u64),
    Store(u64),
    Munmap(u64, u64),
    /// `brk` back to the heap's base, dropping the heap.
    BrkTo(u64),
}

impl Step {
    fn op(self, cx: &mut Cx) -> Op {
        match self {
            Step::Load(a) => cx.verify.load(VirtAddr(a)),
            Step::Store(a) => cx.verify.store(VirtAddr(a)),
            Step::Munmap(addr, len) => {
                cx.verify.remove_region(VirtAddr(addr));
                Op::Munmap {
                    addr: VirtAddr(addr),
                    len,
                }
            }
            Step::BrkTo(addr) => {
                cx.verify.remove_region(VirtAddr(addr));
                Op::Brk {
                    addr: Some(VirtAddr(addr)),
                }
            }
        }
    }
}

/// One phase's generator.
#[derive(Debug, Clone)]
pub(crate) enum Gen {
    Anon(Anon),
    Churn(Churn),
    Malloc(Malloc),
    ForkCow(ForkCow),
    DirectIo(DirectIo),
}

impl Gen {
    /// Returns the next operation, or `None` when the phase is over. Once `stop` is set, the
    /// generator unmaps what it mapped and ends.
    pub(crate) fn next(&mut self, last: OpResult, cx: &mut Cx, stop: bool) -> Option<Op> {
        match self {
            Gen::Anon(g) => g.next(last, cx, stop),
            Gen::Churn(g) => g.next(last, cx, stop),
            Gen::Malloc(g) => g.next(last, cx, stop),
            Gen::ForkCow(g) => g.next(last, cx, stop),
            Gen::DirectIo(g) => g.next(last, cx, stop),
        }
    }
}

/// Picks pages of a region per a [`Pattern`].
#[derive(Debug, Clone)]
pub(crate) enum Sampler {
    Sequential,
    Random,
    Zipf { zipf: Zipf, scatter: u64 },
    HotCold { hot: u64, p: f64, scatter: u64 },
    Stride { bytes: u64 },
}

/// Returns a multiplier coprime with `n`, near `n / φ`, that scatters ranks over pages.
fn scatter_for(n: u64) -> u64 {
    let mut m = ((n as f64 * 0.618_033_988_75) as u64).max(1) | 1;
    while gcd(m, n) != 1 {
        m += 2;
    }
    m
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Sampler {
    /// Builds the sampler of `pattern` over `pages` pages.
    pub(crate) fn new(pattern: Pattern, pages: u64) -> Sampler {
        match pattern {
            Pattern::Sequential => Sampler::Sequential,
            Pattern::Random => Sampler::Random,
            Pattern::Zipf { s } => Sampler::Zipf {
                zipf: Zipf::new(pages, s),
                scatter: scatter_for(pages),
            },
            Pattern::HotCold {
                hot_fraction,
                hot_probability,
            } => Sampler::HotCold {
                hot: ((pages as f64 * hot_fraction).round() as u64).clamp(1, pages),
                p: hot_probability,
                scatter: scatter_for(pages),
            },
            Pattern::Stride { bytes } => Sampler::Stride { bytes },
        }
    }

    /// Returns the page for access number `step` of a region of `pages` pages.
    pub(crate) fn page(&self, step: u64, pages: u64, rng: &mut Rng) -> u64 {
        match *self {
            Sampler::Sequential => step % pages,
            Sampler::Random => rng.below(pages),
            Sampler::Zipf { ref zipf, scatter } => {
                let rank = zipf.sample(rng) - 1;
                mul_mod(rank, scatter, pages)
            }
            Sampler::HotCold { hot, p, scatter } => {
                let rank = if hot == pages || rng.chance(p) {
                    rng.below(hot)
                } else {
                    hot + rng.below(pages - hot)
                };
                mul_mod(rank, scatter, pages)
            }
            Sampler::Stride { bytes } => {
                let size = u128::from(pages * PAGE);
                ((u128::from(step) * u128::from(bytes) % size) / u128::from(PAGE)) as u64
            }
        }
    }
}

fn mul_mod(a: u64, b: u64, n: u64) -> u64 {
    (u128::from(a) * u128::from(b) % u128::from(n)) as u64
}

/// `anon`: map one region, touch its pages per the pattern, unmap it.
#[derive(Debug, Clone)]
pub(crate) struct Anon {
    pages: u64,
    sampler: Sampler,
    write_ratio: f64,
    start: Option<u64>,
    step: u64,
    state: AnonState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnonState {
    Map,
    Mapping,
    Touch,
    Done,
}

impl Anon {
    pub(crate) fn new(pages: u64, pattern: Pattern, write_ratio: f64) -> Anon {
        Anon {
            pages,
            sampler: Sampler::new(pattern, pages),
            write_ratio,
            start: None,
            step: 0,
            state: AnonState::Map,
        }
    }

    fn next(&mut self, last: OpResult, cx: &mut Cx, stop: bool) -> Option<Op> {
        match self.state {
            AnonState::Done => return None,
            AnonState::Map => {
                if stop {
                    return None;
                }
                self.state = AnonState::Mapping;
                return Some(Op::Mmap {
                    addr: None,
                    len: self.pages * PAGE,
                    prot: RW,
                    flags: ANON,
                });
            }
            AnonState::Mapping => match last {
                OpResult::Addr(a) => {
                    cx.verify.add_region(a, self.pages);
                    self.start = Some(a.0);
                    self.state = AnonState::Touch;
                }
                // The mapping failed: the phase has nothing to touch.
                _ => {
                    self.state = AnonState::Done;
                    return None;
                }
            },
            AnonState::Touch => {}
        }
        let start = self.start?;
        if stop {
            self.state = AnonState::Done;
            return Some(Step::Munmap(start, self.pages * PAGE).op(cx));
        }
        let page = self.sampler.page(self.step, self.pages, &mut cx.rng);
        self.step += 1;
        let addr = start + page * PAGE;
        Some(if cx.rng.chance(self.write_ratio) {
            Step::Store(addr).op(cx)
        } else {
            Step::Load(addr).op(cx)
        })
    }
}

/// `mmap-churn`: map a region of random size up to `pages`, touch a few pages, unmap it; again.
#[derive(Debug, Clone)]
pub(crate) struct Churn {
    max_pages: u64,
    fixed_size: bool,
    touch: Touch,
    write_ratio: f64,
    state: ChurnState,
    queue: VecDeque<Step>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChurnState {
    Idle,
    Mapping { pages: u64 },
    Touch,
    Done,
}

impl Churn {
    pub(crate) fn new(max_pages: u64, fixed_size: bool, touch: Touch, write_ratio: f64) -> Churn {
        Churn {
            max_pages,
            fixed_size,
            touch,
            write_ratio,
            state: ChurnState::Idle,
            queue: VecDeque::new(),
        }
    }

    fn next(&mut self, last: OpResult, cx: &mut Cx, stop: bool) -> Option<Op> {
        loop {
            match self.state {
                ChurnState::Done => return None,
                ChurnState::Idle => {
                    if stop {
                        self.state = ChurnState::Done;
                        return None;
                    }
                    let pages = if self.fixed_size {
                        self.max_pages
                    } else {
                        1 + cx.rng.below(self.max_pages)
                    };
                    self.state = ChurnState::Mapping { pages };
                    return Some(Op::Mmap {
                        addr: None,
                        len: pages * PAGE,
                        prot: RW,
                        flags: ANON,
                    });
                }
                ChurnState::Mapping { pages } => {
                    let OpResult::Addr(a) = last else {
                        // The mapping failed; try again with another size.
                        self.state = ChurnState::Idle;
                        continue;
                    };
                    cx.verify.add_region(a, pages);
                    let touches = match self.touch {
                        Touch::All => pages,
                        Touch::Pages(n) => n.min(pages),
                    };
                    for i in 0..touches {
                        let page = match self.touch {
                            Touch::All => i,
                            Touch::Pages(_) => cx.rng.below(pages),
                        };
                        let addr = a.0 + page * PAGE;
                        if cx.rng.chance(self.write_ratio) {
                            self.queue.push_back(Step::Store(addr));
                        }
                        self.queue.push_back(Step::Load(addr));
                    }
                    self.queue.push_back(Step::Munmap(a.0, pages * PAGE));
                    self.state = ChurnState::Touch;
                }
                ChurnState::Touch => {
                    let step = if stop {
                        // Skip the touches, keep the unmap.
                        self.queue.retain(|s| matches!(s, Step::Munmap(..)));
                        self.queue.pop_front()
                    } else {
                        self.queue.pop_front()
                    };
                    match step {
                        Some(step) => return Some(step.op(cx)),
                        None => self.state = ChurnState::Idle,
                    }
                }
            }
        }
    }
}

/// Where small allocations come from: the brk heap (the main thread) or an mmapped arena grown
/// with mprotect (other threads, as glibc's non-main arenas).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeapKind {
    Brk,
    Arena,
}

/// One live allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunk {
    addr: u64,
    len: u64,
    mmapped: bool,
}

/// `malloc`: allocations of random sizes with a live set of up to `target` bytes.
#[derive(Debug, Clone)]
pub(crate) struct Malloc {
    target: u64,
    write_ratio: f64,
    kind: HeapKind,
    /// First byte of the heap (page aligned), once known.
    base: u64,
    /// End of the bytes handed out from the heap.
    top: u64,
    /// The heap's end: the break, or the arena's read-write end (page aligned).
    end: u64,
    /// Free heap chunks below `top`, by address, coalesced.
    free: Vec<(u64, u64)>,
    live: Vec<Chunk>,
    live_bytes: u64,
    queue: VecDeque<Step>,
    state: MallocState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MallocState {
    Init,
    AwaitBase,
    Run,
    /// Waiting for the heap to grow to `end` for an allocation of `len` at `top`.
    AwaitGrow {
        end: u64,
        len: u64,
    },
    /// Waiting for an mmapped chunk of `len` bytes (a multiple of pages).
    AwaitMmap {
        len: u64,
    },
    Cleanup,
    Done,
}

impl Malloc {
    pub(crate) fn new(target: u64, write_ratio: f64, thread: u32) -> Malloc {
        Malloc {
            target,
            write_ratio,
            kind: if thread == 0 {
                HeapKind::Brk
            } else {
                HeapKind::Arena
            },
            base: 0,
            top: 0,
            end: 0,
            free: Vec::new(),
            live: Vec::new(),
            live_bytes: 0,
            queue: VecDeque::new(),
            state: MallocState::Init,
        }
    }

    fn next(&mut self, last: OpResult, cx: &mut Cx, stop: bool) -> Option<Op> {
        // Results first.
        match self.state {
            MallocState::AwaitBase => match last {
                OpResult::Addr(a) => {
                    self.base = align_up(a.0, PAGE);
                    self.top = self.base;
                    self.end = match self.kind {
                        // An unaligned break: the heap starts at the next page.
                        HeapKind::Brk => a.0,
                        HeapKind::Arena => self.base,
                    };
                    cx.verify.add_region(VirtAddr(self.base), 0);
                    self.state = MallocState::Run;
                }
                _ => {
                    self.state = MallocState::Done;
                    return None;
                }
            },
            MallocState::AwaitGrow { end, len } => {
                let grown = match (self.kind, last) {
                    (HeapKind::Brk, OpResult::Addr(a)) => a.0 >= end,
                    (HeapKind::Arena, OpResult::Ok) => true,
                    _ => false,
                };
                self.state = MallocState::Run;
                if grown {
                    self.end = end;
                    cx.verify
                        .resize_region(VirtAddr(self.base), (end - self.base) / PAGE);
                    self.take_heap(self.top, len);
                    self.top += len;
                } else {
                    // As glibc's sysmalloc: when the heap cannot grow, mmap instead.
                    let len = align_up(len, PAGE);
                    self.state = MallocState::AwaitMmap { len };
                    return Some(self.mmap(len));
                }
            }
            MallocState::AwaitMmap { len } => {
                self.state = MallocState::Run;
                if let OpResult::Addr(a) = last {
                    cx.verify.add_region(a, len / PAGE);
                    self.born(Chunk {
                        addr: a.0,
                        len,
                        mmapped: true,
                    });
                }
            }
            _ => {}
        }
        if stop && !matches!(self.state, MallocState::Cleanup | MallocState::Done) {
            self.begin_cleanup();
        }
        loop {
            match self.state {
                MallocState::Done => return None,
                MallocState::Init => {
                    if stop {
                        self.state = MallocState::Done;
                        return None;
                    }
                    self.state = MallocState::AwaitBase;
                    return Some(match self.kind {
                        HeapKind::Brk => Op::Brk { addr: None },
                        HeapKind::Arena => Op::Mmap {
                            addr: None,
                            len: ARENA_SIZE,
                            prot: PROT_NONE,
                            flags: ANON | MAP_NORESERVE,
                        },
                    });
                }
                MallocState::Cleanup => {
                    return match self.queue.pop_front() {
                        Some(step) => Some(step.op(cx)),
                        None => {
                            self.state = MallocState::Done;
                            None
                        }
                    };
                }
                MallocState::Run => {
                    if let Some(step) = self.queue.pop_front() {
                        return Some(step.op(cx));
                    }
                    if let Some(op) = self.act(cx) {
                        return Some(op);
                    }
                }
                MallocState::AwaitBase
                | MallocState::AwaitGrow { .. }
                | MallocState::AwaitMmap { .. } => return None,
            }
        }
    }

    /// Does one thing: allocate, free, or touch a live chunk; returns its operation, if it
    /// needs one now (a free from the heap is pure bookkeeping).
    fn act(&mut self, cx: &mut Cx) -> Option<Op> {
        let roll = cx.rng.unit();
        if self.live.is_empty() || roll < 0.3 {
            // Sizes are log-uniform from 16 bytes to 1 MiB (capped by the target).
            let max = MAX_ALLOC.min(self.target).max(ALIGN) as f64;
            let len = (ALIGN as f64 * (max / ALIGN as f64).powf(cx.rng.unit())) as u64;
            let len = align_up(len.max(1), ALIGN);
            if self.live_bytes + len > self.target && !self.live.is_empty() {
                return self.free_random(cx);
            }
            return Some(self.alloc(len, cx));
        }
        if roll < 0.6 {
            return self.free_random(cx);
        }
        let chunk = self.live[cx.rng.below(self.live.len() as u64) as usize];
        let pages = chunk_pages(chunk);
        let addr = (chunk.addr & !(PAGE - 1)) + cx.rng.below(pages) * PAGE;
        Some(if cx.rng.chance(self.write_ratio) {
            cx.verify.store(VirtAddr(addr))
        } else {
            cx.verify.load(VirtAddr(addr))
        })
    }

    fn mmap(&self, len: u64) -> Op {
        Op::Mmap {
            addr: None,
            len,
            prot: RW,
            flags: ANON,
        }
    }

    /// Allocates `len` bytes (a multiple of 16): from a free heap chunk, the heap top, a grown
    /// heap, or mmap.
    fn alloc(&mut self, len: u64, cx: &mut Cx) -> Op {
        if len >= MMAP_THRESHOLD {
            let len = align_up(len, PAGE);
            self.state = MallocState::AwaitMmap { len };
            return self.mmap(len);
        }
        if let Some(i) = self.free.iter().position(|&(_, l)| l >= len) {
            let (addr, l) = self.free[i];
            if l == len {
                self.free.remove(i);
            } else {
                self.free[i] = (addr + len, l - len);
            }
            self.take_heap(addr, len);
            return self.queue.pop_front().map_or(Op::Yield, |s| s.op(cx));
        }
        if self.top + len <= self.end {
            self.take_heap(self.top, len);
            self.top += len;
            return self.queue.pop_front().map_or(Op::Yield, |s| s.op(cx));
        }
        let end = align_up(self.top + len + TOP_PAD, PAGE);
        if self.kind == HeapKind::Arena && end > self.base + ARENA_SIZE {
            let len = align_up(len, PAGE);
            self.state = MallocState::AwaitMmap { len };
            return self.mmap(len);
        }
        self.state = MallocState::AwaitGrow { end, len };
        match self.kind {
            HeapKind::Brk => Op::Brk {
                addr: Some(VirtAddr(end)),
            },
            HeapKind::Arena => Op::Mprotect {
                addr: VirtAddr(self.base),
                len: end - self.base,
                prot: RW,
            },
        }
    }

    /// Records a heap chunk at `addr` as live and queues its first touches.
    fn take_heap(&mut self, addr: u64, len: u64) {
        self.born(Chunk {
            addr,
            len,
            mmapped: false,
        });
    }

    /// Records `chunk` as live and queues stores to (up to 16 of) its pages, as a program
    /// writes what it allocates.
    fn born(&mut self, chunk: Chunk) {
        self.live.push(chunk);
        self.live_bytes += chunk.len;
        let pages = chunk_pages(chunk);
        let first = chunk.addr & !(PAGE - 1);
        let n = pages.min(ALLOC_TOUCHES);
        for i in 0..n {
            let page = i * pages / n;
            self.queue.push_back(Step::Store(first + page * PAGE));
        }
    }

    /// Frees a random live chunk: munmap for an mmapped one, the free list (and maybe a trim
    /// of the heap top) for a heap one.
    fn free_random(&mut self, cx: &mut Cx) -> Option<Op> {
        if self.live.is_empty() {
            return None;
        }
        let i = cx.rng.below(self.live.len() as u64) as usize;
        let chunk = self.live.swap_remove(i);
        self.live_bytes -= chunk.len;
        if chunk.mmapped {
            return Some(Step::Munmap(chunk.addr, chunk.len).op(cx));
        }
        self.release(chunk.addr, chunk.len);
        self.trim(cx)
    }

    /// Returns a heap chunk to the free list, coalescing, and lowers `top` past free space.
    fn release(&mut self, addr: u64, len: u64) {
        let i = self.free.partition_point(|&(a, _)| a < addr);
        self.free.insert(i, (addr, len));
        if i + 1 < self.free.len() && addr + len == self.free[i + 1].0 {
            self.free[i].1 += self.free[i + 1].1;
            self.free.remove(i + 1);
        }
        if i > 0 && self.free[i - 1].0 + self.free[i - 1].1 == addr {
            self.free[i - 1].1 += self.free[i].1;
            self.free.remove(i);
        }
        if let Some(&(a, l)) = self.free.last() {
            if a + l == self.top {
                self.top = a;
                self.free.pop();
            }
        }
    }

    /// Gives the heap's free top back when it exceeds the trim threshold, keeping `TOP_PAD`.
    fn trim(&mut self, cx: &mut Cx) -> Option<Op> {
        let keep = align_up(self.top + TOP_PAD, PAGE).max(self.base);
        if self.end <= keep || self.end - keep < TRIM_THRESHOLD {
            return None;
        }
        let old = self.end;
        self.end = keep;
        cx.verify
            .resize_region(VirtAddr(self.base), (keep - self.base) / PAGE);
        Some(match self.kind {
            HeapKind::Brk => Op::Brk {
                addr: Some(VirtAddr(keep)),
            },
            HeapKind::Arena => Op::Madvise {
                addr: VirtAddr(keep),
                len: old - keep,
                advice: MADV_DONTNEED,
            },
        })
    }

    /// Queues the release of everything: mmapped chunks, then the heap.
    fn begin_cleanup(&mut self) {
        self.queue.clear();
        let was_started = !matches!(self.state, MallocState::Init | MallocState::AwaitBase);
        self.state = MallocState::Cleanup;
        if !was_started {
            self.state = MallocState::Done;
            return;
        }
        for c in self.live.drain(..).filter(|c| c.mmapped) {
            self.queue.push_back(Step::Munmap(c.addr, c.len));
        }
        self.live_bytes = 0;
        self.free.clear();
        self.top = self.base;
        match self.kind {
            HeapKind::Brk => self.queue.push_back(Step::BrkTo(self.base)),
            HeapKind::Arena => self.queue.push_back(Step::Munmap(self.base, ARENA_SIZE)),
        }
    }
}

/// Returns how many pages a chunk touches.
fn chunk_pages(c: Chunk) -> u64 {
    let first = c.addr & !(PAGE - 1);
    (align_up(c.addr + c.len, PAGE) - first) / PAGE
}

/// `fork-cow`: map and fill a region, fork children that check what they inherited, and have
/// parent and children rewrite pages and check what they read back, for some generations.
#[derive(Debug, Clone)]
pub(crate) struct ForkCow {
    pages: u64,
    children: u32,
    generations: u32,
    /// This process's generation: 0 for the one that maps, 1 for its children, ….
    generation: u32,
    write_ratio: f64,
    start: u64,
    cursor: u64,
    forked: u32,
    state: CowState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CowState {
    Map,
    Mapping,
    Fill,
    /// A child checks every page holds what its ancestors wrote.
    CheckInherited,
    Fork,
    Rewrite,
    Check,
    Unmap,
    Done,
}

impl ForkCow {
    pub(crate) fn new(pages: u64, children: u32, generations: u32, write_ratio: f64) -> ForkCow {
        ForkCow {
            pages,
            children,
            generations,
            generation: 0,
            write_ratio,
            start: 0,
            cursor: 0,
            forked: 0,
            state: CowState::Map,
        }
    }

    fn next(&mut self, last: OpResult, cx: &mut Cx, stop: bool) -> Option<Op> {
        if stop && !matches!(self.state, CowState::Done | CowState::Unmap) {
            self.state = if matches!(self.state, CowState::Map | CowState::Mapping) {
                CowState::Done
            } else {
                CowState::Unmap
            };
        }
        loop {
            let page_addr = self.start + self.cursor * PAGE;
            match self.state {
                CowState::Done => return None,
                CowState::Map => {
                    self.state = CowState::Mapping;
                    return Some(Op::Mmap {
                        addr: None,
                        len: self.pages * PAGE,
                        prot: RW,
                        flags: ANON,
                    });
                }
                CowState::Mapping => {
                    let OpResult::Addr(a) = last else {
                        self.state = CowState::Done;
                        return None;
                    };
                    cx.verify.add_region(a, self.pages);
                    self.start = a.0;
                    self.state = CowState::Fill;
                }
                CowState::Fill | CowState::Rewrite => {
                    if self.cursor == self.pages {
                        self.cursor = 0;
                        self.state = match self.state {
                            CowState::Fill => CowState::Fork,
                            _ => CowState::Check,
                        };
                        continue;
                    }
                    self.cursor += 1;
                    if self.state == CowState::Fill || cx.rng.chance(self.write_ratio) {
                        return Some(cx.verify.store(VirtAddr(page_addr)));
                    }
                }
                CowState::CheckInherited | CowState::Check => {
                    if self.cursor == self.pages {
                        self.cursor = 0;
                        self.state = match self.state {
                            CowState::CheckInherited => CowState::Fork,
                            _ => CowState::Unmap,
                        };
                        continue;
                    }
                    self.cursor += 1;
                    return Some(cx.verify.load(VirtAddr(page_addr)));
                }
                CowState::Fork => {
                    if self.generation >= self.generations || self.forked == self.children {
                        self.state = CowState::Rewrite;
                        continue;
                    }
                    self.forked += 1;
                    let child = ForkCow {
                        generation: self.generation + 1,
                        cursor: 0,
                        forked: 0,
                        state: CowState::CheckInherited,
                        ..self.clone()
                    };
                    let cx = Cx {
                        rng: Rng::new(cx.rng.next_u64()),
                        verify: cx.verify.for_child(),
                        thread: cx.thread,
                    };
                    return Some(Op::Fork {
                        child: Box::new(Task::forked(Gen::ForkCow(child), cx)),
                    });
                }
                CowState::Unmap => {
                    self.state = CowState::Done;
                    return Some(Step::Munmap(self.start, self.pages * PAGE).op(cx));
                }
            }
        }
    }
}

/// Pages per `direct-io` request (64 KiB, a common `O_DIRECT` block size).
pub(crate) const DIO_CHUNK_PAGES: u64 = 16;
/// The largest `direct-io` file (the machine's disk keeps at most this per file).
pub(crate) const DIO_MAX_FILE: u64 = mm_sim::MAX_FILE_BYTES;
/// Where the file's pages are named for the values written into them: a pseudo-address per
/// file page, so each page's check word and value are its own.
const DIO_FILE_SPACE: u64 = 0x7e00_0000_0000;

/// `direct-io`: a file of `size` on the machine's disk, written whole once, then chunks of it
/// written (at `write_ratio`) or read back and checked, with `O_DIRECT` `pwrite`/`pread` from a
/// two-chunk buffer. Every page written carries a value derived from (pid, file page,
/// version); every page read back is checked against the version last written.
#[derive(Debug, Clone)]
pub(crate) struct DirectIo {
    chunk_pages: u64,
    write_ratio: f64,
    versions: Vec<u16>,
    buf: Option<u64>,
    file: u32,
    state: DioState,
    /// Chunks written by the initial pass so far.
    filled: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DioState {
    Map,
    Mapping,
    /// Pick the next chunk and what to do with it.
    Choose,
    /// Storing page `i` of the source buffer for chunk `c`.
    Fill {
        c: u64,
        i: u64,
    },
    /// The write of chunk `c` is in flight.
    Writing {
        c: u64,
        prev: u16,
    },
    /// The read of chunk `c` is in flight.
    Reading {
        c: u64,
    },
    /// Loading page `i` of the destination buffer for chunk `c`.
    Check {
        c: u64,
        i: u64,
    },
    Done,
}

impl DirectIo {
    pub(crate) fn new(pages: u64, write_ratio: f64, thread: u32) -> DirectIo {
        let pages = pages.clamp(1, DIO_MAX_FILE / PAGE);
        let chunk_pages = DIO_CHUNK_PAGES.min(pages);
        DirectIo {
            chunk_pages,
            write_ratio,
            versions: vec![0; pages.div_ceil(chunk_pages) as usize],
            buf: None,
            file: thread,
            state: DioState::Map,
            filled: 0,
        }
    }

    fn chunks(&self) -> u64 {
        self.versions.len() as u64
    }

    /// The file page `i` of chunk `c`, its check-word offset and value in `version`.
    fn word(&self, pid: u32, c: u64, i: u64, version: u16) -> (u64, u64) {
        let name = VirtAddr(DIO_FILE_SPACE + (c * self.chunk_pages + i) * PAGE);
        let word = super::verify::check_word(name);
        (word.0 - name.0, super::verify::encode(pid, word, version))
    }

    fn next(&mut self, last: OpResult, cx: &mut Cx, stop: bool) -> Option<Op> {
        let bytes = self.chunk_pages * PAGE;
        loop {
            match self.state {
                DioState::Done => return None,
                DioState::Map => {
                    if stop {
                        return None;
                    }
                    self.state = DioState::Mapping;
                    return Some(Op::Mmap {
                        addr: None,
                        len: 2 * bytes,
                        prot: RW,
                        flags: ANON,
                    });
                }
                DioState::Mapping => match last {
                    OpResult::Addr(a) => {
                        self.buf = Some(a.0);
                        // One file per process thread: the pid names it.
                        self.file = (cx.verify.pid() << 8) | (self.file & 0xFF);
                        self.state = DioState::Choose;
                    }
                    _ => {
                        self.state = DioState::Done;
                        return None;
                    }
                },
                DioState::Choose => {
                    let buf = self.buf?;
                    if stop {
                        self.state = DioState::Done;
                        return Some(Op::Munmap {
                            addr: VirtAddr(buf),
                            len: 2 * bytes,
                        });
                    }
                    // The initial pass writes every chunk once, in order.
                    let (c, write) = if self.filled < self.chunks() {
                        self.filled += 1;
                        (self.filled - 1, true)
                    } else {
                        (cx.rng.below(self.chunks()), cx.rng.chance(self.write_ratio))
                    };
                    if write {
                        let prev = self.versions[c as usize];
                        self.versions[c as usize] = match prev.wrapping_add(1) {
                            0 => 1,
                            v => v,
                        };
                        self.state = DioState::Fill { c, i: 0 };
                    } else {
                        self.state = DioState::Reading { c };
                        return Some(Op::FileRead {
                            file: self.file,
                            offset: c * bytes,
                            buf: VirtAddr(buf + bytes),
                            len: bytes,
                        });
                    }
                }
                DioState::Fill { c, i } => {
                    let buf = self.buf?;
                    let version = self.versions[c as usize];
                    if i < self.chunk_pages {
                        let (off, value) = self.word(cx.verify.pid(), c, i, version);
                        self.state = DioState::Fill { c, i: i + 1 };
                        return Some(Op::Store {
                            addr: VirtAddr(buf + i * PAGE + off),
                            value,
                        });
                    }
                    let prev = version.wrapping_sub(1);
                    self.state = DioState::Writing { c, prev };
                    return Some(Op::FileWrite {
                        file: self.file,
                        offset: c * bytes,
                        buf: VirtAddr(buf),
                        len: bytes,
                    });
                }
                DioState::Writing { c, prev } => {
                    if last != OpResult::Value(bytes) {
                        // The write failed: the file keeps the previous version.
                        self.versions[c as usize] = prev;
                    }
                    self.state = DioState::Choose;
                }
                DioState::Reading { c } => match last {
                    OpResult::Value(n) if n == bytes => self.state = DioState::Check { c, i: 0 },
                    OpResult::Value(n) => {
                        // A short read of a file written whole: data was lost.
                        cx.verify.count(bytes, n);
                        self.state = DioState::Choose;
                    }
                    _ => self.state = DioState::Choose,
                },
                DioState::Check { c, i } => {
                    let buf = self.buf?;
                    if i == self.chunk_pages {
                        self.state = DioState::Choose;
                        continue;
                    }
                    let version = self.versions[c as usize];
                    let (off, value) = self.word(cx.verify.pid(), c, i, version);
                    let expected = if version == 0 { 0 } else { value };
                    self.state = DioState::Check { c, i: i + 1 };
                    return Some(
                        cx.verify
                            .load_expecting(VirtAddr(buf + bytes + i * PAGE + off), expected),
                    );
                }
            }
        }
    }
}
