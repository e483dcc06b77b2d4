//! Reading the section table and sections of a PE32+ image (a UKI, or the EFI stub it is
//! made from), with the `object` crate's PE reader.
//!
//! The builder reads the stub's table to lay the UKI sections out after it and reads
//! sections back in its tests; init reads `.osrel` of each slot and checks that an upload
//! is a UKI. A UKI is tens of MiB, so init reads only the headers and the one section
//! ([`read_section`]) instead of the whole file.

use std::io::{Read, Seek, SeekFrom};

use object::pe::{ImageDosHeader, ImageNtHeaders64, IMAGE_NT_OPTIONAL_HDR64_MAGIC};
use object::read::pe::ImageNtHeaders;
use object::LittleEndian as LE;

/// How many bytes of a file [`read_section`] reads to find the section table; PE headers
/// of an EFI stub or UKI take a few hundred bytes.
pub const HEADERS_READ: usize = 64 * 1024;

/// Not a PE32+ image this module can read; the message is the PE reader's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PeError(pub String);

impl From<object::Error> for PeError {
    fn from(e: object::Error) -> Self {
        Self(e.to_string())
    }
}

/// Reading a section out of a file failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Reading or seeking the file failed; `op` says which (`read`, `seek in`).
    #[error("{op}: {source}")]
    Io {
        /// What was done.
        op: &'static str,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The headers are not those of a PE32+ image.
    #[error(transparent)]
    NotPe(#[from] PeError),
}

/// One entry of the section table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Name (`.osrel`), up to 8 bytes.
    pub name: String,
    /// Relative virtual address.
    pub virtual_address: u64,
    /// Size in memory (the section's real length; the raw data is padded).
    pub virtual_size: u64,
    /// File offset of the raw data.
    pub raw_offset: u64,
    /// Size of the raw data in the file.
    pub raw_size: u64,
}

impl Section {
    /// The length of the section's contents: its size in memory, but no more than the file
    /// holds.
    pub fn data_len(&self) -> u64 {
        self.virtual_size.min(self.raw_size)
    }
}

/// The section table of a PE32+ image.
#[derive(Debug, Clone)]
pub struct PeSections {
    /// `ImageBase` from the optional header.
    pub image_base: u64,
    /// Sections in table order.
    pub sections: Vec<Section>,
}

impl PeSections {
    /// Parses the headers at the start of `data` (the whole file, or at least its headers).
    pub fn parse(data: &[u8]) -> Result<Self, PeError> {
        let dos = ImageDosHeader::parse(data)?;
        let mut offset = dos.nt_headers_offset().into();
        let (nt, _) = ImageNtHeaders64::parse(data, &mut offset)?;
        if nt.optional_header.magic.get(LE) != IMAGE_NT_OPTIONAL_HDR64_MAGIC {
            return Err(PeError("not PE32+".into()));
        }
        let table = nt.sections(data, offset)?;
        let sections = table
            .iter()
            .map(|s| Section {
                name: String::from_utf8_lossy(s.raw_name()).into_owned(),
                virtual_address: u64::from(s.virtual_address.get(LE)),
                virtual_size: u64::from(s.virtual_size.get(LE)),
                raw_offset: u64::from(s.pointer_to_raw_data.get(LE)),
                raw_size: u64::from(s.size_of_raw_data.get(LE)),
            })
            .collect();
        Ok(Self {
            image_base: nt.optional_header.image_base.get(LE),
            sections,
        })
    }

    /// The section called `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// First address after the last section, image base included.
    pub fn end(&self) -> u64 {
        self.image_base
            + self
                .sections
                .iter()
                .map(|s| s.virtual_address + s.virtual_size)
                .max()
                .unwrap_or(0)
    }
}

/// The contents of section `name` of the PE image in `data` (trimmed to its size in
/// memory); `None` when there is no such section.
pub fn section_data(data: &[u8], name: &str) -> Result<Option<Vec<u8>>, PeError> {
    let Some(section) = PeSections::parse(data)?.get(name).cloned() else {
        return Ok(None);
    };
    let start = usize::try_from(section.raw_offset).unwrap_or(usize::MAX);
    let len = usize::try_from(section.data_len()).unwrap_or(usize::MAX);
    data.get(start..start.saturating_add(len))
        .map(|bytes| Some(bytes.to_vec()))
        .ok_or_else(|| PeError("Invalid PE section offset or size".into()))
}

/// Reads section `name` of the PE file `file`: its headers first ([`HEADERS_READ`] bytes),
/// then only that section. `None` when there is no such section.
pub fn read_section<F: Read + Seek>(
    file: &mut F,
    name: &str,
) -> Result<Option<Vec<u8>>, ReadError> {
    let io = |op| move |source| ReadError::Io { op, source };
    let mut head = Vec::with_capacity(HEADERS_READ);
    file.by_ref()
        .take(HEADERS_READ as u64)
        .read_to_end(&mut head)
        .map_err(io("read"))?;
    let Some(section) = PeSections::parse(&head)?.get(name).cloned() else {
        return Ok(None);
    };
    let mut data = vec![0u8; usize::try_from(section.data_len()).unwrap_or(0)];
    file.seek(SeekFrom::Start(section.raw_offset))
        .map_err(io("seek in"))?;
    file.read_exact(&mut data).map_err(io("read"))?;
    Ok(Some(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PE32+ image: DOS header, NT headers, one section table entry, the data.
    fn tiny_pe(name: &[u8], data: &[u8], virtual_size: u32) -> Vec<u8> {
        let mut pe = vec![0u8; 0x200];
        pe[0..2].copy_from_slice(b"MZ");
        pe[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        let nt = 0x40;
        pe[nt..nt + 4].copy_from_slice(b"PE\0\0");
        let coff = nt + 4;
        pe[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes()); // x86-64
        pe[coff + 2..coff + 4].copy_from_slice(&1u16.to_le_bytes()); // one section
        let opt_size: u16 = 240; // PE32+ optional header with 16 data directories
        pe[coff + 16..coff + 18].copy_from_slice(&opt_size.to_le_bytes());
        let opt = coff + 20;
        pe[opt..opt + 2].copy_from_slice(&IMAGE_NT_OPTIONAL_HDR64_MAGIC.to_le_bytes());
        pe[opt + 24..opt + 32].copy_from_slice(&0x1_4000_0000u64.to_le_bytes()); // ImageBase
        pe[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes()); // NumberOfRvaAndSizes
        let sec = opt + usize::from(opt_size);
        pe[sec..sec + name.len()].copy_from_slice(name);
        pe[sec + 8..sec + 12].copy_from_slice(&virtual_size.to_le_bytes());
        pe[sec + 12..sec + 16].copy_from_slice(&0x1000u32.to_le_bytes()); // VirtualAddress
        let raw_size = data.len().next_multiple_of(0x200) as u32;
        pe[sec + 16..sec + 20].copy_from_slice(&raw_size.to_le_bytes());
        pe[sec + 20..sec + 24].copy_from_slice(&0x200u32.to_le_bytes()); // PointerToRawData
        pe.extend_from_slice(data);
        pe.resize(0x200 + raw_size as usize, 0);
        pe
    }

    #[test]
    fn reads_a_section_from_memory_and_from_a_file() {
        let pe = tiny_pe(b".osrel", b"IMAGE_VERSION=7\n", 16);
        let table = PeSections::parse(&pe).unwrap();
        assert_eq!(table.image_base, 0x1_4000_0000);
        assert_eq!(table.sections.len(), 1);
        assert_eq!(table.end(), 0x1_4000_0000 + 0x1000 + 16);
        assert_eq!(
            section_data(&pe, ".osrel").unwrap().unwrap(),
            b"IMAGE_VERSION=7\n"
        );
        assert_eq!(section_data(&pe, ".linux").unwrap(), None);
        let mut file = std::io::Cursor::new(pe.clone());
        assert_eq!(
            read_section(&mut file, ".osrel").unwrap().unwrap(),
            b"IMAGE_VERSION=7\n"
        );
        // The raw data is padded; the contents end at the size in memory.
        let pe = tiny_pe(b".cmdline", b"console=ttyS0", 7);
        assert_eq!(section_data(&pe, ".cmdline").unwrap().unwrap(), b"console");
    }

    #[test]
    fn refuses_what_is_not_pe() {
        assert!(PeSections::parse(&[1u8; 100]).is_err());
        let mut junk = std::io::Cursor::new(vec![1u8; 100]);
        assert!(matches!(
            read_section(&mut junk, ".osrel"),
            Err(ReadError::NotPe(_))
        ));
    }
}
