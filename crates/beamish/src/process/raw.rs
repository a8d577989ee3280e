//! One allocation per process: the control block followed by the future.
//!
//! [`Cell<F>`] is `#[repr(C)]` with the [`Header`] first, so a pointer to the
//! header is a pointer to the whole process, and everything that does not know
//! `F` (the scheduler, the process table, wakers) works with
//! `NonNull<Header>` and reaches the future through the header's vtable.
//!
//! Lifetime: the future is dropped when the process ends (on its own
//! scheduler thread, so destructors run at exit, as a user expects); the
//! memory is freed when the last reference goes. Because senders read the
//! process table without taking a reference, the free is deferred through an
//! epoch (see `process::table`), so a sender that loaded the pointer just
//! before the slot was cleared still reads valid memory.

use std::cell::UnsafeCell;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use super::Header;

/// Operations that need the future's type.
pub(crate) struct ProcVTable {
    /// Polls the future.
    pub(crate) poll: unsafe fn(NonNull<Header>, &mut Context<'_>) -> Poll<()>,
    /// Drops the future in place (once, when the process ends).
    pub(crate) drop_future: unsafe fn(NonNull<Header>),
    /// Frees the allocation (after the future was dropped).
    pub(crate) dealloc: unsafe fn(NonNull<Header>),
    /// Size of the allocation, for `process_info`.
    pub(crate) size: usize,
}

/// The allocation: header, then the future.
#[repr(C)]
pub(crate) struct Cell<F> {
    pub(crate) header: Header,
    future: UnsafeCell<ManuallyDrop<F>>,
}

impl<F: Future<Output = ()> + Send + 'static> Cell<F> {
    const VTABLE: ProcVTable = ProcVTable {
        poll: poll::<F>,
        drop_future: drop_future::<F>,
        dealloc: dealloc::<F>,
        size: std::mem::size_of::<Cell<F>>(),
    };

    /// Allocates a process. The header is built by `make` from the vtable.
    pub(crate) fn allocate(
        future: F,
        make: impl FnOnce(&'static ProcVTable) -> Header,
    ) -> NonNull<Header> {
        let cell = Box::new(Cell {
            header: make(&Self::VTABLE),
            future: UnsafeCell::new(ManuallyDrop::new(future)),
        });
        NonNull::from(Box::leak(cell)).cast()
    }
}

/// # Safety
/// `p` is a `Cell<F>` whose future is alive, polled by the thread that runs it.
unsafe fn poll<F: Future<Output = ()>>(p: NonNull<Header>, cx: &mut Context<'_>) -> Poll<()> {
    let cell = p.cast::<Cell<F>>().as_ptr();
    // SAFETY: the process is RUNNING on this thread, so nobody else touches
    // the future; it never moves (the allocation is fixed) so pinning holds.
    unsafe {
        let fut: &mut F = &mut (*(*cell).future.get());
        Pin::new_unchecked(fut).poll(cx)
    }
}

/// # Safety
/// `p` is a `Cell<F>` whose future is alive; called once.
unsafe fn drop_future<F>(p: NonNull<Header>) {
    let cell = p.cast::<Cell<F>>().as_ptr();
    // SAFETY: called once, by the thread ending the process.
    unsafe { ManuallyDrop::drop(&mut *(*cell).future.get()) }
}

/// # Safety
/// `p` is a `Cell<F>` whose future was dropped and that nobody references.
unsafe fn dealloc<F>(p: NonNull<Header>) {
    // SAFETY: the last reference is gone; the future is ManuallyDrop and was
    // dropped already, so this frees the header's fields and the memory.
    drop(unsafe { Box::from_raw(p.cast::<Cell<F>>().as_ptr()) });
}

// ---------------------------------------------------------------- wakers

/// A waker is a counted pointer to the header: cloning adds a reference,
/// waking notifies the process (scheduling it if idle).
static WAKER_VTABLE: RawWakerVTable =
    RawWakerVTable::new(waker_clone, waker_wake, waker_wake_by_ref, waker_drop);

unsafe fn waker_clone(p: *const ()) -> RawWaker {
    // SAFETY: the waker we clone holds a reference, so the header is alive.
    let header = unsafe { &*(p as *const Header) };
    header.state.ref_inc();
    RawWaker::new(p, &WAKER_VTABLE)
}

unsafe fn waker_wake(p: *const ()) {
    // SAFETY: as in `waker_clone`; this consumes the waker's reference.
    unsafe {
        waker_wake_by_ref(p);
        waker_drop(p);
    }
}

unsafe fn waker_wake_by_ref(p: *const ()) {
    // SAFETY: the waker holds a reference.
    let header = unsafe { NonNull::new_unchecked(p as *mut Header) };
    super::wake(header);
}

unsafe fn waker_drop(p: *const ()) {
    // SAFETY: the waker holds a reference, which we give up.
    unsafe { super::release(NonNull::new_unchecked(p as *mut Header)) }
}

/// A waker borrowing the reference held by the run queue entry for the
/// duration of one poll (no reference count traffic per poll).
pub(crate) fn borrowed_waker(p: NonNull<Header>) -> ManuallyDrop<Waker> {
    // SAFETY: the caller holds a reference for as long as the waker is used;
    // ManuallyDrop ensures the borrowed waker never drops that reference.
    ManuallyDrop::new(unsafe {
        Waker::from_raw(RawWaker::new(p.as_ptr() as *const (), &WAKER_VTABLE))
    })
}
