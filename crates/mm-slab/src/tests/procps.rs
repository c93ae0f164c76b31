//! A reader of `/proc/slabinfo` with the column rules of procps-ng 4 (`library/slabinfo.c`,
//! `slabinfo_read_failed` and `parse_slabinfo20`), which `slabtop` uses:
//!
//! - the first line must scan as `"slabinfo - version: %d.%d"` with major 2;
//! - lines starting with `#` are skipped;
//! - every other line must yield 8 conversions of
//!   `"%128s" "%u %u %u %u %u : tunables %*u %*u %*u : slabdata %u %u %*u"`.
//!
//! The scanner follows `sscanf`: a blank in the format matches any run of white space (none
//! included), `%u` and `%s` skip leading white space, and any other character must match
//! exactly.

/// One cache as procps reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub(crate) name: String,
    pub(crate) active_objs: u64,
    pub(crate) num_objs: u64,
    pub(crate) objsize: u64,
    pub(crate) objperslab: u64,
    pub(crate) pagesperslab: u64,
    pub(crate) active_slabs: u64,
    pub(crate) num_slabs: u64,
}

const SLABINFO_NAME_LEN: usize = 128;
const SLABINFO_LINE_LEN: usize = 2048;

/// Scans `input` with a tiny `sscanf` supporting `%Ns`, `%u`, `%*u`, `%d`, blanks and
/// literals; returns the conversions made before the first mismatch.
fn sscanf(input: &str, format: &str) -> Vec<String> {
    let inp: Vec<char> = input.chars().collect();
    let fmt: Vec<char> = format.chars().collect();
    let (mut i, mut f) = (0, 0);
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < inp.len() && inp[*i].is_whitespace() {
            *i += 1;
        }
    };
    while f < fmt.len() {
        let fc = fmt[f];
        if fc.is_whitespace() {
            skip_ws(&mut i);
            f += 1;
        } else if fc == '%' {
            f += 1;
            let suppress = fmt.get(f) == Some(&'*');
            if suppress {
                f += 1;
            }
            let mut width = 0usize;
            while let Some(d) = fmt.get(f).and_then(|c| c.to_digit(10)) {
                width = width * 10 + d as usize;
                f += 1;
            }
            let conv = fmt[f];
            f += 1;
            skip_ws(&mut i);
            let start = i;
            match conv {
                's' => {
                    let max = if width == 0 { usize::MAX } else { width };
                    while i < inp.len() && !inp[i].is_whitespace() && i - start < max {
                        i += 1;
                    }
                }
                'u' | 'd' => {
                    if i < inp.len() && (inp[i] == '-' || inp[i] == '+') {
                        i += 1;
                    }
                    while i < inp.len() && inp[i].is_ascii_digit() {
                        i += 1;
                    }
                    if !inp[start..i].iter().any(char::is_ascii_digit) {
                        return out;
                    }
                }
                other => panic!("unsupported conversion %{other}"),
            }
            if i == start {
                return out;
            }
            if !suppress {
                out.push(inp[start..i].iter().collect());
            }
        } else {
            if inp.get(i) != Some(&fc) {
                return out;
            }
            i += 1;
            f += 1;
        }
    }
    out
}

/// Parses a slabinfo text as `slabtop` does; errors name the offending line.
pub(crate) fn parse_slabinfo(text: &str) -> Result<Vec<Parsed>, String> {
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().ok_or("empty file")?;
    let v = sscanf(first, "slabinfo - version: %d.%d");
    if v.len() != 2 || v[0] != "2" {
        return Err(format!("bad version line {first:?}"));
    }
    let format =
        format!("%{SLABINFO_NAME_LEN}s%u %u %u %u %u : tunables %*u %*u %*u : slabdata %u %u %*u");
    let mut out = Vec::new();
    for line in lines {
        if line.len() >= SLABINFO_LINE_LEN {
            return Err(format!("line longer than fgets reads: {line:?}"));
        }
        if line.starts_with('#') {
            continue;
        }
        let v = sscanf(line, &format);
        if v.len() < 8 {
            return Err(format!("{} conversions in {line:?}", v.len()));
        }
        let n = |k: usize| -> Result<u64, String> {
            v[k].parse()
                .map_err(|_| format!("field {k} of {line:?} is not an unsigned number"))
        };
        out.push(Parsed {
            name: v[0].clone(),
            active_objs: n(1)?,
            num_objs: n(2)?,
            objsize: n(3)?,
            objperslab: n(4)?,
            pagesperslab: n(5)?,
            active_slabs: n(6)?,
            num_slabs: n(7)?,
        });
    }
    Ok(out)
}

#[test]
fn the_scanner_reads_the_real_kernel_sample_and_rejects_broken_lines() {
    let sample = "slabinfo - version: 2.1\n\
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n\
kmalloc-8k            32     32   8192    4    8 : tunables    0    0    0 : slabdata      8      8      0\n\
kmem_cache           256    256    256   16    1 : tunables    0    0    0 : slabdata     16     16      0\n";
    let p = parse_slabinfo(sample).unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(
        p[0],
        Parsed {
            name: "kmalloc-8k".into(),
            active_objs: 32,
            num_objs: 32,
            objsize: 8192,
            objperslab: 4,
            pagesperslab: 8,
            active_slabs: 8,
            num_slabs: 8,
        }
    );
    assert!(parse_slabinfo("slabinfo - version: 1.1\n").is_err());
    let broken = sample.replace(": slabdata", "slabdata");
    assert!(parse_slabinfo(&broken).is_err());
    let spaced = sample.replace("kmem_cache ", "kmem cache");
    assert!(parse_slabinfo(&spaced).is_err());
}
