//! People and devices of SPEC §2.2. Plain data: the simulator creates them, the lake and the
//! database store them.

use super::time::UtcMillis;
use chrono::NaiveDate;
use std::fmt;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Genotype {
    SS,
    SC,
    AS,
    SBeta0,
    SBetaPlus,
}

impl Genotype {
    pub const ALL: [Genotype; 5] = [
        Genotype::SS,
        Genotype::SC,
        Genotype::AS,
        Genotype::SBeta0,
        Genotype::SBetaPlus,
    ];

    /// The spelling of the database CHECK (Unicode β).
    pub fn as_str(self) -> &'static str {
        match self {
            Genotype::SS => "SS",
            Genotype::SC => "SC",
            Genotype::AS => "AS",
            Genotype::SBeta0 => "Sβ0",
            Genotype::SBetaPlus => "Sβ+",
        }
    }

    /// Accepts the Unicode spelling and ASCII `Sb0`/`Sb+` for configuration files.
    pub fn parse(s: &str) -> Option<Genotype> {
        match s {
            "SS" => Some(Genotype::SS),
            "SC" => Some(Genotype::SC),
            "AS" => Some(Genotype::AS),
            "Sβ0" | "Sb0" | "SB0" => Some(Genotype::SBeta0),
            "Sβ+" | "Sb+" | "SB+" => Some(Genotype::SBetaPlus),
            _ => None,
        }
    }
}

impl fmt::Display for Genotype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sex {
    F,
    M,
}

impl Sex {
    pub fn as_str(self) -> &'static str {
        match self {
            Sex::F => "F",
            Sex::M => "M",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Patient,
    Caregiver,
    Clinician,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Caregiver => "caregiver",
            Role::Clinician => "clinician",
            Role::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub user_id: Uuid,
    pub role: Role,
    pub given_name: String,
    pub family_name: String,
    pub email: String,
    pub phone: String,
    pub created_at: UtcMillis,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Patient {
    pub patient_id: Uuid,
    pub user_id: Uuid,
    pub sex: Sex,
    pub birth_date: NaiveDate,
    pub genotype: Genotype,
    pub weight_kg: f64,
    pub height_cm: f64,
    pub city: String,
    pub country: String,
    pub emergency_contact_name: String,
    pub emergency_contact_phone: String,
    pub current_device_id: Uuid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relationship {
    Parent,
    Guardian,
    Family,
}

impl Relationship {
    pub fn as_str(self) -> &'static str {
        match self {
            Relationship::Parent => "parent",
            Relationship::Guardian => "guardian",
            Relationship::Family => "family",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CaregiverLink {
    pub caregiver_user_id: Uuid,
    pub patient_id: Uuid,
    pub relationship: Relationship,
    /// 1 is called first.
    pub priority: u8,
    pub can_acknowledge_alerts: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Clinician {
    pub user_id: Uuid,
    pub license_number: String,
    pub specialty: String,
    pub hospital: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClinicianRole {
    PrimaryPhysician,
    Specialist,
    Emergency,
    Consultant,
}

impl ClinicianRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ClinicianRole::PrimaryPhysician => "primary_physician",
            ClinicianRole::Specialist => "specialist",
            ClinicianRole::Emergency => "emergency",
            ClinicianRole::Consultant => "consultant",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClinicianLink {
    pub clinician_user_id: Uuid,
    pub patient_id: Uuid,
    pub role: ClinicianRole,
    pub is_primary: bool,
}

/// A device and its assignment to one patient over `[assigned_from, assigned_to)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub device_id: Uuid,
    pub model: String,
    pub firmware_version: String,
    pub patient_id: Uuid,
    pub assigned_from: UtcMillis,
    pub assigned_to: Option<UtcMillis>,
}
