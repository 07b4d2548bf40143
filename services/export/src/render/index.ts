export type { ExportAuditEvent, ExportCloseout, ExportCloseoutItem, ExportIsolationPoint, ExportPermit, ExportResult, ExportWorkflowStep, OptionalDate } from './types';
export { exportFilename, isoDate, personLabel } from './format';
export { renderPermitPdf } from './pdf';
export { FontBook, notoFonts, standardFonts } from './fonts';
export { pdfEntryName, streamPdfZip } from './zip';
export { AUDIT_HEADERS, CLOSEOUT_HEADERS, ISOLATION_HEADERS, PERMIT_HEADERS, streamExcel } from './excel';
