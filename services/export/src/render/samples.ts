import type { ExportPermit } from './types';

/*
 * Synthetic export records for the renderers' tests and for test/bench/export-render.js. They
 * exercise every section: people with and without names, isolation points, a closeout and audit
 * rows, so a benchmark measures realistic documents.
 */

const BASE = Date.UTC(2025, 2, 1, 8, 0, 0);
const hours = (h: number) => new Date(BASE + h * 3_600_000);

const LOREM =
  'Replace the mechanical seal of pump P-101 in the boiler house. The line is drained and vented, ' +
  'the motor is locked out at MCC-3 and the suction and discharge valves are chained and tagged. ';

/** A fully populated permit number `i` (isolation points, closeout, audit); `descriptionRepeat` lengthens its text. */
export function samplePermit(i: number, opts: { descriptionRepeat?: number; isolationPoints?: number; auditRows?: number } = {}): ExportPermit {
  const n = String(i).padStart(6, '0');
  const points = opts.isolationPoints ?? 3;
  const audits = opts.auditRows ?? 5;
  return {
    id: `permit-${n}`,
    permit_number: `PTW-2025-${n}`,
    title: `Pump seal replacement ${i}`,
    description: LOREM.repeat(opts.descriptionRepeat ?? 2).trim(),
    location: 'Boiler house, level 2',
    project_id: 'p1',
    project_name: 'North plant',
    permit_type_id: 'hot-work',
    permit_type_name: 'Hot work',
    status: 'active',
    priority: 'high',
    probability: 3,
    severity: 4,
    risk_score: 12,
    risk_level: 'high',
    control_measures: 'Fire watch for 30 minutes after the work; gas test before and every 2 hours.',
    ppe_requirements: ['Helmet', 'Safety glasses', 'Fire-retardant overalls'],
    safety_checklist: { gas_test_done: true, fire_extinguisher_present: true, area_barricaded: false },
    planned_start_time: hours(1),
    planned_end_time: hours(9),
    actual_start_time: hours(1.5),
    actual_end_time: undefined,
    created_by: 'u-worker',
    verifier_id: 'u-super',
    approver_id: 'u-manager',
    submitted_at: hours(0.2),
    verified_at: hours(0.5),
    approved_at: hours(0.8),
    created_at: hours(0),
    updated_at: hours(1.5),
    user_names: { 'u-worker': 'Wanda Worker', 'u-super': 'Sam Supervisor', 'u-manager': 'Mia Manager' },
    workflow_steps: [
      { step: 'verification', assignee_id: 'u-super', status: 'completed', started_at: hours(0.2), completed_at: hours(0.5) },
      { step: 'approval', assignee_id: 'u-manager', status: 'completed', started_at: hours(0.5), completed_at: hours(0.8) },
    ],
    isolation_points: Array.from({ length: points }, (_, k) => ({
      name: `Isolator ${String.fromCharCode(65 + (k % 26))}${k}`,
      energy_type: k % 2 ? 'mechanical' : 'electrical',
      required: k !== points - 1,
      status: 'verified',
      lock_ids: [`L-${i}-${k}`],
      isolated_by: 'u-super',
      isolated_at: hours(0.6),
      verified_by: 'u-manager',
      verified_at: hours(0.7),
    })),
    closeout: {
      checklist: {
        area_clean: { label: 'Work area cleaned', required: true, done: true, comments: 'Swept', by: 'u-worker', at: hours(8) },
        tools_removed: { label: 'Tools and materials removed', required: true, done: false },
        locks_removed: { label: 'Personal locks removed', required: false, done: false },
      },
      remarks: 'Waiting for the fire watch to end.',
      completed: false,
    },
    audit: Array.from({ length: audits }, (_, k) => ({
      action: k === 0 ? 'create' : 'transition',
      from: k === 0 ? undefined : 'draft',
      to: k === 0 ? undefined : 'submitted',
      user_id: 'u-worker',
      at: hours(k * 0.1),
      comments: k === 1 ? 'Ready for verification' : '',
    })),
  };
}

/** Texts in the scripts the PDF export must print (issue 15): site crews write in their own language. */
export const SCRIPT_SAMPLES = {
  devanagari: 'वेल्डिंग कार्य',
  tamil: 'பம்ப் அறை, தளம் 2',
  arabic: 'صمام الوقود الرئيسي',
  arabicName: 'محمد العلي',
  chinese: '更换锅炉房泵的机械密封',
} as const;

/** Permit `i` with its title, location, names and free texts in Devanagari, Tamil, Arabic and Chinese. */
export function mixedScriptPermit(i: number): ExportPermit {
  const p = samplePermit(i);
  const s = SCRIPT_SAMPLES;
  return {
    ...p,
    title: `${s.devanagari} ${i}`,
    location: s.tamil,
    description: `${s.chinese}。管线已排空并通风，电机已在 MCC-3 上锁。 ${p.description}`,
    control_measures: 'كل العمال يجب أن يرتدوا معدات الحماية الشخصية قبل الدخول إلى المنطقة (رقم 12).',
    user_names: { ...p.user_names, 'u-super': s.arabicName, 'u-manager': 'मुख्य अभियंता' },
    isolation_points: p.isolation_points.map((ip, k) => ({ ...ip, name: [`${s.arabic} V-${k}`, `मुख्य ब्रेकर MCC-${k}`, `主断路器 ${k} 号`][k % 3] })),
  };
}
