//! JSON seen by CEL without converting it up front (issue 18).
//!
//! A condition's variables are JSON; CEL evaluates `dyn Val` values. Converting a
//! saved list of 1 000 pods deeply (a boxed map per object: ~100 000 allocations)
//! before `size(stuck) == 1000` reads nothing but its length cost more than the rest
//! of the condition. Here a JSON array or object becomes a [`LazyList`] or
//! [`LazyMap`]: its size is read from the JSON, and only when something looks
//! inside it (a field, an element, iteration, equality, a function that takes a
//! list) is it converted into the cel crate's own list or map, one level deep,
//! whose elements are again lazy. So `stuck.all(p, p.status.phase == 'Running')`
//! converts each pod's top level and its `status`, not its `metadata` or `spec`.
//!
//! Semantics do not change: every operation other than `size` is delegated to the
//! very `CelList`/`CelMap` the deep conversion built (same elements, same order,
//! same errors), and `as_builtin` hands that value out, so code that downcasts to a
//! list or map (equality with a literal, `Value` conversion, extension functions)
//! sees a built-in one. `as_builtin`/`into_builtin` are the cel crate's hidden
//! hooks for its own types: a new cel version must be checked against them (the
//! tests in condition.rs exercise each path).

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use cel::common::traits::{Adder, Container, Indexer, Iterable, Sizer, Zeroer};
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt, Type,
};
use cel::common::value::{Builtin, BuiltinRef, Val};
use serde_json::Value;

/// JSON to a CEL value that borrows the JSON: scalars are converted (strings
/// borrowed, integers stay `int`, `uint` only above i64, other numbers `double`),
/// arrays and objects are wrapped, to be converted one level when first read.
pub(super) fn to_val<'v>(v: &'v Value) -> Box<dyn Val + 'v> {
    match v {
        Value::Null => Box::new(CelNull),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Box::new(CelInt::from(i))
            } else if let Some(u) = n.as_u64() {
                Box::new(CelUInt::from(u))
            } else {
                Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        Value::String(s) => Box::new(CelString::from(s.as_str())),
        Value::Array(items) => Box::new(LazyList {
            items,
            built: OnceLock::new(),
        }),
        Value::Object(map) => Box::new(LazyMap {
            map,
            built: OnceLock::new(),
        }),
    }
}

/// A JSON array as a CEL `list`.
pub(super) struct LazyList<'v> {
    items: &'v [Value],
    /// The list with each element converted by [`to_val`], built on first need.
    built: OnceLock<CelList<'v>>,
}

/// A JSON object as a CEL `map` with string keys.
pub(super) struct LazyMap<'v> {
    map: &'v serde_json::Map<String, Value>,
    /// The map with each value converted by [`to_val`], built on first need.
    built: OnceLock<CelMap<'v>>,
}

impl<'v> LazyList<'v> {
    fn build(&self) -> CelList<'v> {
        CelList::from(self.items.iter().map(to_val).collect::<Vec<_>>())
    }

    fn built(&self) -> &CelList<'v> {
        self.built.get_or_init(|| self.build())
    }

    fn into_built(self) -> CelList<'v> {
        let items = self.items;
        self.built
            .into_inner()
            .unwrap_or_else(|| CelList::from(items.iter().map(to_val).collect::<Vec<_>>()))
    }
}

impl<'v> LazyMap<'v> {
    fn build(&self) -> CelMap<'v> {
        CelMap::from(
            self.map
                .iter()
                .map(|(k, v)| (CelMapKey::String(CelString::from(k.as_str())), to_val(v)))
                .collect::<HashMap<_, _>>(),
        )
    }

    fn built(&self) -> &CelMap<'v> {
        self.built.get_or_init(|| self.build())
    }

    fn into_built(self) -> CelMap<'v> {
        match self.built.into_inner() {
            Some(built) => built,
            None => LazyMap {
                map: self.map,
                built: OnceLock::new(),
            }
            .build(),
        }
    }
}

/// The `Val` of a lazy container: its type and size from the JSON, everything
/// else from the built-in value it converts to (`$variant` of `BuiltinRef` and
/// `Builtin`), which the cel crate's own list and map implement.
macro_rules! lazy_val {
    ($lazy:ident, $builtin:ident, $variant:ident, $len:ident) => {
        /// As the built value: some of the cel crate's errors print the value they
        /// could not use with `{:?}`.
        impl fmt::Debug for $lazy<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.built(), f)
            }
        }

        impl<'v> Val for $lazy<'v> {
            fn get_type(&self) -> &Type {
                <$builtin as Val>::cel_type()
            }

            fn cel_type() -> &'static Type {
                <$builtin as Val>::cel_type()
            }

            fn as_adder<'b, 'w>(&'b self) -> Option<&'b (dyn Adder + 'w)>
            where
                Self: 'w,
            {
                self.built().as_adder()
            }

            fn as_container(&self) -> Option<&dyn Container> {
                self.built().as_container()
            }

            fn as_indexer<'b, 'w>(&'b self) -> Option<&'b (dyn Indexer + 'w)>
            where
                Self: 'w,
            {
                self.built().as_indexer()
            }

            fn into_indexer<'w>(self: Box<Self>) -> Option<Box<dyn Indexer + 'w>>
            where
                Self: 'w,
            {
                Box::new(self.into_built()).into_indexer()
            }

            fn as_iterable<'b, 'w>(&'b self) -> Option<&'b (dyn Iterable + 'w)>
            where
                Self: 'w,
            {
                self.built().as_iterable()
            }

            fn as_sizer(&self) -> Option<&dyn Sizer> {
                Some(self)
            }

            fn as_zeroer(&self) -> Option<&dyn Zeroer> {
                Some(self)
            }

            fn equals(&self, other: &dyn Val) -> bool {
                self.built().equals(other)
            }

            fn clone_as_boxed<'w>(&self) -> Box<dyn Val + 'w>
            where
                Self: 'w,
            {
                // The clone reads the same JSON; it converts it again if it must.
                Box::new($lazy {
                    $len: self.$len,
                    built: OnceLock::new(),
                })
            }

            fn as_builtin<'b, 'w>(&'b self) -> BuiltinRef<'b, 'w>
            where
                Self: 'w,
            {
                BuiltinRef::$variant(self.built())
            }

            fn into_builtin<'w>(self: Box<Self>) -> Option<Builtin<'w>>
            where
                Self: 'w,
            {
                Some(Builtin::$variant(self.into_built()))
            }
        }

        /// The number of elements (entries), as the built value would count them:
        /// one per JSON element (JSON object keys are unique).
        impl Sizer for $lazy<'_> {
            fn size(&self) -> CelInt {
                (self.$len.len() as i64).into()
            }
        }

        impl Zeroer for $lazy<'_> {
            fn is_zero_value(&self) -> bool {
                self.$len.is_empty()
            }
        }
    };
}

lazy_val!(LazyList, CelList, List, items);
lazy_val!(LazyMap, CelMap, Map, map);
