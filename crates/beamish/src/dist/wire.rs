//! Values that cross nodes: the conversion a GenServer's requests and
//! replies go through when the caller or the server is on another node
//! (or is an Erlang process).

use super::Term;

/// A value that can travel as a [`Term`]. [`Term`] itself travels as it
/// is; with the `serde` feature, every `Serialize + DeserializeOwned` type
/// travels through [`super::to_term`] / [`super::from_term`].
pub trait Wire: Sized + Send + 'static {
    /// The term for this value; `None` if it has none (serde refused it).
    fn to_wire(&self) -> Option<Term>;
    /// The value a term stands for; `None` if it stands for none.
    fn from_wire(term: &Term) -> Option<Self>;
}

impl Wire for Term {
    fn to_wire(&self) -> Option<Term> {
        Some(self.clone())
    }

    fn from_wire(term: &Term) -> Option<Term> {
        Some(term.clone())
    }
}

#[cfg(feature = "serde")]
impl<T> Wire for T
where
    T: ::serde::Serialize + ::serde::de::DeserializeOwned + Send + 'static,
{
    fn to_wire(&self) -> Option<Term> {
        super::to_term(self).ok()
    }

    fn from_wire(term: &Term) -> Option<T> {
        super::from_term(term).ok()
    }
}
